//! Where this board keeps policy bodies: `policy<N>.xml` in QEMU's working directory (through
//! semihosting), N counting the bodies of this boot; each is written to `policy.tmp` and renamed
//! over the previous copy only once whole and matching its hash.

use core::ffi::CStr;

use mpagent_core::sink::Overflow;
use mpagent_firmware_common::exchange::{PolicyBodies, MAX_ASSIGNMENTS};
use semihosting::fs::{self, File};
use semihosting::io::Write as _;

const POLICY_TMP: &CStr = c"policy.tmp";
const POLICY_FILES: [&CStr; MAX_ASSIGNMENTS] = [
    c"policy0.xml",
    c"policy1.xml",
    c"policy2.xml",
    c"policy3.xml",
];

/// The policy files.
#[derive(Default)]
pub struct PolicyFiles {
    file: Option<File>,
    failed: bool,
    kept: usize,
}

impl PolicyBodies for PolicyFiles {
    fn start(&mut self) -> bool {
        self.file = File::create(POLICY_TMP).ok();
        self.failed = false;
        self.file.is_some()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let Some(file) = self.file.as_mut() else {
            return Err(Overflow);
        };
        if self.failed || file.write_all(bytes).is_err() {
            self.failed = true;
            return Err(Overflow);
        }
        Ok(())
    }

    fn finish(&mut self, _len: usize, keep: bool) -> bool {
        // Closed before the rename.
        let written = self.file.take().is_some() && !self.failed;
        if !(keep && written) {
            let _ = fs::remove_file(POLICY_TMP);
            return false;
        }
        let Some(name) = POLICY_FILES.get(self.kept % MAX_ASSIGNMENTS) else {
            return false;
        };
        let kept = fs::rename(POLICY_TMP, name).is_ok();
        if kept {
            self.kept += 1;
        }
        kept
    }
}
