//! Where this board keeps policy bodies: `policy<N>.xml` in QEMU's working directory (through
//! semihosting), each written to `policy.tmp` and renamed over the previous copy once whole.

use core::ffi::CStr;

use mpagent_core::sink::{Overflow, Sink};
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
pub struct PolicyFiles;

impl PolicyBodies for PolicyFiles {
    type Body<'a> = FileSink;

    fn begin(&mut self, _index: usize) -> Option<FileSink> {
        let file = File::create(POLICY_TMP).ok()?;
        Some(FileSink {
            file,
            failed: false,
        })
    }

    fn keep(&mut self, index: usize, _len: usize) -> bool {
        // The sink is dropped (the file closed) before this rename.
        POLICY_FILES
            .get(index)
            .is_some_and(|name| fs::rename(POLICY_TMP, name).is_ok())
    }
}

/// Streams a policy body into a semihosting file.
pub struct FileSink {
    file: File,
    failed: bool,
}

impl Sink for FileSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        if self.failed || self.file.write_all(bytes).is_err() {
            self.failed = true;
            return Err(Overflow);
        }
        Ok(())
    }
}
