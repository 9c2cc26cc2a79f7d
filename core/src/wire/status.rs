//! Status messages to `StatusReceiver` (docs/protocol.md §5). The 2007 SDK documents only the
//! skeleton `<Status><Type>…</Type><Properties><Property …/></Properties><Qualifiers><Qualifier
//! …/></Qualifiers></Status>` \[confirmed\]; the property set is ours \[profile\]:
//!
//! ```text
//! <Status><Type>{type}</Type><Properties>
//!   <Property Name="ClientID" Value="GUID:…" /><Property Name="DateTime" Value="{WMI}" />
//!   <Property Name="MachineName" Value="…" /><Property Name="SiteCode" Value="PS1" />
//!   {caller's properties}</Properties>
//! <Qualifiers>{<Qualifier Name="…" Value="…" />}</Qualifiers></Status>
//! ```
//!
//! The four leading properties are those every `SmsStatusMessage` carries in the Messaging SDK
//! (client ID, time in the WMI form, machine name, site code); `Name`/`Value` attributes are the
//! form registration's `DiscoveryProperties` use.

use crate::config::SiteCode;
use crate::guid::Smsid;
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::xml::{ascii_str, raw, XmlWriter};

/// One status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusMessage<'a> {
    /// `<Type>`: the status message class (e.g. `SMS_GenericStatusMessage_Info`).
    pub message_type: &'a str,
    /// `ClientID` property.
    pub smsid: Smsid,
    /// `MachineName` property.
    pub machine_name: &'a str,
    /// `SiteCode` property.
    pub site_code: SiteCode,
    /// `DateTime` property (WMI form).
    pub time: DateTime,
    /// Further `(Name, Value)` properties of this type, in order.
    pub properties: &'a [(&'a str, &'a str)],
    /// `(Name, Value)` qualifiers, in order.
    pub qualifiers: &'a [(&'a str, &'a str)],
}

impl Emit for StatusMessage<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            raw!(w, "<Status>")?;
            w.element("Type", self.message_type)?;
            raw!(w, "<Properties>")?;
            let id = self.smsid.to_text();
            w.name_value("Property", "ClientID", ascii_str(&id)?)?;
            let t = self.time.wmi();
            w.name_value("Property", "DateTime", ascii_str(&t)?)?;
            w.name_value("Property", "MachineName", self.machine_name)?;
            w.name_value("Property", "SiteCode", self.site_code.as_str())?;
            for (name, value) in self.properties {
                w.name_value("Property", name, value)?;
            }
            raw!(w, "</Properties><Qualifiers>")?;
            for (name, value) in self.qualifiers {
                w.name_value("Qualifier", name, value)?;
            }
            raw!(w, "</Qualifiers></Status>")
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::sink::{emitted_len, SliceSink};
    use std::string::String;
    use std::vec;

    #[test]
    fn status_shape() {
        let m = StatusMessage {
            message_type: "SMS_GenericStatusMessage_Info",
            smsid: Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap(),
            machine_name: "PRN-1",
            site_code: SiteCode::new("ps1").unwrap(),
            time: DateTime {
                year: 2026,
                month: 1,
                day: 2,
                hour: 3,
                minute: 4,
                second: 5,
            },
            properties: &[("Message", "toner <low> & \"empty\"")],
            qualifiers: &[("Severity", "Warning")],
        };
        let mut v = vec![0u8; emitted_len(&m).unwrap()];
        let mut s = SliceSink::new(&mut v);
        m.emit(&mut s).unwrap();
        let t: String = char::decode_utf16(v.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
            .map(|c| c.unwrap())
            .collect();
        assert_eq!(
            t,
            "<Status><Type>SMS_GenericStatusMessage_Info</Type><Properties>\
<Property Name=\"ClientID\" Value=\"GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42\" />\
<Property Name=\"DateTime\" Value=\"20260102030405.000000+000\" />\
<Property Name=\"MachineName\" Value=\"PRN-1\" /><Property Name=\"SiteCode\" Value=\"PS1\" />\
<Property Name=\"Message\" Value=\"toner &lt;low&gt; &amp; &quot;empty&quot;\" /></Properties>\
<Qualifiers><Qualifier Name=\"Severity\" Value=\"Warning\" /></Qualifiers></Status>"
        );
    }
}
