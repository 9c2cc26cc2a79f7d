//! State messages to `MP_RelayEndpoint` (docs/protocol.md §5): a `<Report>` whose body is one
//! `<StateMessage>`, preceded (as relay messages are) by an XML declaration.
//!
//! ```text
//! <?xml version="1.0" encoding="UTF-16"?><Report><ReportHeader><Identification>…</Identification>
//! <ReportDetails><ReportContent>State Message Data</ReportContent><ReportType>Full</ReportType>
//! <Date>{WMI}</Date><Version>1.0</Version><Format>1.0</Format></ReportDetails></ReportHeader>
//! <ReportBody><StateMessage MessageTime="{WMI}"><Topic ID="…" Type="…" IDType="…" />
//! <State ID="…" Criticality="0" /><StateDetails Type="1"><![CDATA[…]]></StateDetails>
//! <UserParameters Flags="0" Count="N"><Param>…</Param>…</UserParameters></StateMessage></ReportBody></Report>
//! ```
//!
//! [profile]: no `InventoryAction` in the header, `ReportContent`/`Format`, the `MessageTime`
//! attribute and the `UserParameters` attributes follow the state message a Windows client logs
//! (Microsoft's troubleshooting pages); see [`crate::profile`].

use crate::profile;
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::report::{write_identification, write_report_details, ReportIdentity, ReportType};
use crate::wire::xml::{ascii_str, fmt_u64, markup, raw, Escaping, XmlWriter};

/// The XML declaration relay messages start with.
pub const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>";

/// One state message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateMessage<'a> {
    /// Who the message is about.
    pub identity: ReportIdentity<'a>,
    /// When the state changed (`Date` and `MessageTime`, WMI form).
    pub time: DateTime,
    /// `Topic/@ID`: what the state is about (an update ID, a deployment ID, …).
    pub topic_id: &'a str,
    /// `Topic/@Type`: the topic type number.
    pub topic_type: u32,
    /// `Topic/@IDType`.
    pub topic_id_type: u32,
    /// `State/@ID`.
    pub state_id: u32,
    /// `State/@Criticality` ([profile] default [`profile::STATE_CRITICALITY`]).
    pub criticality: u32,
    /// `StateDetails/@Type` ([profile] default [`profile::STATE_DETAILS_TYPE`]).
    pub details_type: u32,
    /// The `StateDetails` text, written as CDATA (a `]]>` inside is split safely).
    pub details: &'a str,
    /// `UserParameters/Param`s, in order.
    pub params: &'a [&'a str],
}

impl<'a> StateMessage<'a> {
    /// A state message with the profile's criticality and details type, no details and no
    /// parameters.
    pub fn new(
        identity: ReportIdentity<'a>,
        time: DateTime,
        topic_id: &'a str,
        topic_type: u32,
        topic_id_type: u32,
        state_id: u32,
    ) -> Self {
        Self {
            identity,
            time,
            topic_id,
            topic_type,
            topic_id_type,
            state_id,
            criticality: profile::STATE_CRITICALITY,
            details_type: profile::STATE_DETAILS_TYPE,
            details: "",
            params: &[],
        }
    }
}

/// `<![CDATA[text]]>`, splitting every `]]>` as `]]]]><![CDATA[>` so the section cannot end early.
pub(crate) fn cdata(w: &mut XmlWriter<'_>, mut text: &str) -> Result<(), Overflow> {
    raw!(w, "<![CDATA[")?;
    while let Some(at) = text.find("]]>") {
        let (head, tail) = text.split_at(at.saturating_add(2));
        w.raw(head)?;
        raw!(w, "]]><![CDATA[")?;
        text = tail;
    }
    w.raw(text)?;
    raw!(w, "]]>")
}

impl Emit for StateMessage<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            w.raw(XML_DECLARATION)?;
            raw!(w, "<Report><ReportHeader>")?;
            write_identification(w, &self.identity)?;
            write_report_details(
                w,
                profile::STATE_REPORT_CONTENT,
                ReportType::Full,
                &self.time,
                Default::default(),
                profile::STATE_REPORT_FORMAT,
            )?;
            let time = self.time.wmi();
            let (mut a, mut b, mut c, mut d, mut e) =
                ([0u8; 20], [0u8; 20], [0u8; 20], [0u8; 20], [0u8; 20]);
            // Up to the details in one writer call.
            w.parts(&[
                markup!("</ReportHeader><ReportBody><StateMessage MessageTime=\""),
                (ascii_str(&time)?, Escaping::Attr),
                markup!("\"><Topic ID=\""),
                (self.topic_id, Escaping::Attr),
                markup!("\" Type=\""),
                (fmt_u64(self.topic_type.into(), &mut a), Escaping::Attr),
                markup!("\" IDType=\""),
                (fmt_u64(self.topic_id_type.into(), &mut b), Escaping::Attr),
                markup!("\" /><State ID=\""),
                (fmt_u64(self.state_id.into(), &mut c), Escaping::Attr),
                markup!("\" Criticality=\""),
                (fmt_u64(self.criticality.into(), &mut d), Escaping::Attr),
                markup!("\" /><StateDetails Type=\""),
                (fmt_u64(self.details_type.into(), &mut e), Escaping::Attr),
                markup!("\">"),
            ])?;
            cdata(w, self.details)?;
            raw!(w, "</StateDetails><UserParameters Flags=\"0\"")?;
            let mut n = [0u8; 20];
            w.attr("Count", fmt_u64(self.params.len() as u64, &mut n))?;
            w.close()?;
            for p in self.params {
                w.element("Param", p)?;
            }
            w.parts(&[markup!(
                "</UserParameters></StateMessage></ReportBody></Report>"
            )])
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::guid::Smsid;
    use crate::sink::{emitted_len, SliceSink};
    use std::string::String;
    use std::vec;

    fn text(item: &dyn Emit) -> String {
        let mut v = vec![0u8; emitted_len(item).unwrap()];
        let mut s = SliceSink::new(&mut v);
        item.emit(&mut s).unwrap();
        char::decode_utf16(v.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
            .map(|c| c.unwrap())
            .collect()
    }

    #[test]
    fn state_message_shape() {
        let id = ReportIdentity::new(
            Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap(),
            "PRN-1",
        );
        let time = DateTime {
            year: 2026,
            month: 11,
            day: 23,
            hour: 10,
            minute: 0,
            second: 5,
        };
        let m = StateMessage {
            details: "<ok a=\"1\"/> ]]> tail",
            params: &["{F8C7C37F-B42B-4C0A-B050-2BB44DF1098A}", "0 & 1"],
            ..StateMessage::new(id, time, "Topic&1", 9003, 0, 2)
        };
        let want = std::format!(
            "<?xml version=\"1.0\" encoding=\"UTF-16\"?><Report><ReportHeader><Identification><Machine>\
<ClientInstalled>{ci}</ClientInstalled><ClientType>{ct}</ClientType><ClientID>GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42</ClientID>\
<ClientVersion>{cv}</ClientVersion><NetBIOSName>PRN-1</NetBIOSName><CodePage>{cp}</CodePage><SystemDefaultLCID>{lcid}</SystemDefaultLCID>\
</Machine></Identification><ReportDetails><ReportContent>State Message Data</ReportContent><ReportType>Full</ReportType>\
<Date>20261123100005.000000+000</Date><Version>1.0</Version><Format>1.0</Format></ReportDetails></ReportHeader>\
<ReportBody><StateMessage MessageTime=\"20261123100005.000000+000\"><Topic ID=\"Topic&amp;1\" Type=\"9003\" IDType=\"0\" />\
<State ID=\"2\" Criticality=\"0\" /><StateDetails Type=\"1\"><![CDATA[<ok a=\"1\"/> ]]]]><![CDATA[> tail]]></StateDetails>\
<UserParameters Flags=\"0\" Count=\"2\"><Param>{{F8C7C37F-B42B-4C0A-B050-2BB44DF1098A}}</Param><Param>0 &amp; 1</Param></UserParameters>\
</StateMessage></ReportBody></Report>",
            ci = profile::REPORT_CLIENT_INSTALLED,
            ct = profile::REPORT_CLIENT_TYPE,
            cv = profile::REPORT_CLIENT_VERSION,
            cp = profile::REPORT_CODE_PAGE,
            lcid = profile::REPORT_SYSTEM_DEFAULT_LCID,
        );
        assert_eq!(text(&m), want);
    }

    #[test]
    fn cdata_splits_every_terminator() {
        for (input, want) in [
            ("", "<![CDATA[]]>"),
            ("]]>", "<![CDATA[]]]]><![CDATA[>]]>"),
            ("a]]>]]>b", "<![CDATA[a]]]]><![CDATA[>]]]]><![CDATA[>b]]>"),
            ("]]", "<![CDATA[]]]]>"),
        ] {
            let f = |out: &mut dyn Sink| XmlWriter::with(out, |w| cdata(w, input));
            assert_eq!(text(&f), want, "{input}");
        }
    }
}
