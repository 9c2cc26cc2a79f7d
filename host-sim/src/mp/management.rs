//! The one-way management endpoints (docs/protocol.md §5): `MP_DdrEndpoint` (discovery /
//! heartbeat), `MP_HinvEndpoint` (hardware inventory), `StatusReceiver` (status messages) and
//! `MP_RelayEndpoint` (state messages). Each body is read with `serde-xml-rs` far enough to check
//! its shape, then stored; the MP answers HTTP 200 with an empty body.
//!
//! Accepted shapes (the checks, in one place):
//!
//! | endpoint | root | checks | kind |
//! |---|---|---|---|
//! | `MP_DdrEndpoint` | `Report` | `ClientID` = `SourceID`; `ReportType` Full; `InventoryActionID` `{…0003}` | `ddr` |
//! | `MP_HinvEndpoint` | `Report` | `ClientID` = `SourceID`; `ReportType` Full or Delta; `InventoryActionID` `{…0001}` | `hinv-full` / `hinv-delta` |
//! | `StatusReceiver` | `Status` | a non-empty `Type`; a `Property Name="ClientID"`, if any, = `SourceID` | `status` |
//! | `MP_RelayEndpoint` | `Report` after an `<?xml …?>` declaration | `ClientID` = `SourceID`; one or more `StateMessage`s, each with `Topic@ID` and `State@ID` | `state` |
//!
//! Every `<Instance>` of a report body needs `Content` New, Update or Delete, a `Class`, and exactly
//! one child element named after that class. The document must end with its root's end tag.
//! DTDs and entity declarations are refused before parsing. A heartbeat DDR may have an empty
//! `<ReportBody/>` (the public tools send one).

use super::clientauth::Sender;
use super::db::{NewMessage, SiteDb};
use super::envelope::Body;
use super::messages::{check_no_dtd, check_root, parse, strip_xml_declaration, MsgHeader};
use super::rejection::Rejection;
use super::util::normalize_smsid;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The management endpoints this module serves.
pub const ENDPOINTS: [&str; 4] = [
    "MP_DdrEndpoint",
    "MP_HinvEndpoint",
    "StatusReceiver",
    "MP_RelayEndpoint",
];

/// `InventoryActionID` of discovery data (docs/protocol.md §5).
pub const DISCOVERY_ACTION: &str = "{00000000-0000-0000-0000-000000000003}";
/// `InventoryActionID` of hardware inventory (docs/protocol.md §5).
pub const HARDWARE_ACTION: &str = "{00000000-0000-0000-0000-000000000001}";

#[derive(Debug, Deserialize)]
struct Machine {
    #[serde(rename = "ClientID")]
    client_id: String,
}

#[derive(Debug, Deserialize)]
struct Identification {
    #[serde(rename = "Machine")]
    machine: Machine,
}

#[derive(Debug, Deserialize)]
struct ReportDetails {
    #[serde(rename = "ReportType", default)]
    report_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InventoryAction {
    #[serde(rename = "InventoryActionID")]
    id: String,
}

#[derive(Debug, Deserialize)]
struct ReportHeader {
    #[serde(rename = "Identification")]
    identification: Identification,
    #[serde(rename = "ReportDetails", default)]
    details: Option<ReportDetails>,
    #[serde(rename = "InventoryAction", default)]
    action: Option<InventoryAction>,
}

#[derive(Debug, Deserialize)]
struct Instance {
    #[serde(rename = "@Content", default)]
    content: Option<String>,
    #[serde(rename = "@Class", default)]
    class: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdAttr {
    #[serde(rename = "@ID", default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StateMessage {
    #[serde(rename = "Topic", default)]
    topic: Option<IdAttr>,
    #[serde(rename = "State", default)]
    state: Option<IdAttr>,
}

#[derive(Debug, Default, Deserialize)]
struct ReportBody {
    #[serde(rename = "Instance", default)]
    instances: Vec<Instance>,
    #[serde(rename = "StateMessage", default)]
    state_messages: Vec<StateMessage>,
}

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(rename = "ReportHeader")]
    header: ReportHeader,
    #[serde(rename = "ReportBody", default)]
    body: Option<ReportBody>,
}

/// The same report read a second time for the child element names of each `<Instance>`.
#[derive(Debug, Default, Deserialize)]
struct InstanceChildren {
    #[serde(rename = "Instance", default)]
    instances: Vec<BTreeMap<String, IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
struct ReportChildren {
    #[serde(rename = "ReportBody", default)]
    body: Option<InstanceChildren>,
}

#[derive(Debug, Deserialize)]
struct StatusProperty {
    #[serde(rename = "@Name", default)]
    name: Option<String>,
    #[serde(rename = "@Value", default)]
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct StatusProperties {
    #[serde(rename = "Property", default)]
    properties: Vec<StatusProperty>,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Properties", default)]
    properties: Option<StatusProperties>,
}

fn bad(what: &str, detail: impl std::fmt::Display) -> Rejection {
    Rejection::new(format!("{what}: {detail}"))
}

/// Parses a `<Report>` and checks what every report needs: the sender's `ClientID` and
/// well-formed instances.
fn parse_report(xml: &str, sender: &str, what: &'static str) -> Result<Report, Rejection> {
    check_no_dtd(xml)?;
    let xml = strip_xml_declaration(xml);
    check_root(xml, "Report", what)?;
    let report: Report = parse(xml, what)?;
    let client_id = report.header.identification.machine.client_id.trim();
    if normalize_smsid(client_id).as_deref() != Some(sender) {
        return Err(bad(
            what,
            format!("report ClientID {client_id:?} is not the sender's SourceID {sender}"),
        ));
    }
    let body = report.body.as_ref();
    let instances = body.map_or(&[][..], |b| &b.instances[..]);
    if !instances.is_empty() {
        let children: ReportChildren = parse(xml, what)?;
        let children = children.body.unwrap_or_default().instances;
        if children.len() != instances.len() {
            return Err(bad(what, "Instance elements could not be read"));
        }
        for (i, (inst, kids)) in instances.iter().zip(&children).enumerate() {
            let content = inst.content.as_deref().unwrap_or("");
            if !matches!(content, "New" | "Update" | "Delete") {
                return Err(bad(
                    what,
                    format!("Instance {i}: Content {content:?} is not New, Update or Delete"),
                ));
            }
            let class = inst.class.as_deref().unwrap_or("").trim();
            if class.is_empty() {
                return Err(bad(what, format!("Instance {i} without a Class")));
            }
            if kids.len() != 1 || !kids.contains_key(class) {
                return Err(bad(
                    what,
                    format!(
                        "Instance {i} of class {class} must hold exactly one <{class}> element"
                    ),
                ));
            }
        }
    }
    Ok(report)
}

fn check_action(report: &Report, expected: &str, what: &'static str) -> Result<(), Rejection> {
    let id = report
        .header
        .action
        .as_ref()
        .map(|a| a.id.trim())
        .unwrap_or("");
    if !id.eq_ignore_ascii_case(expected) {
        return Err(bad(
            what,
            format!("InventoryActionID {id:?}, expected {expected}"),
        ));
    }
    Ok(())
}

fn report_type(report: &Report) -> &str {
    report
        .header
        .details
        .as_ref()
        .and_then(|d| d.report_type.as_deref())
        .map(str::trim)
        .unwrap_or("")
}

/// Checks the body of a message to one of the [`ENDPOINTS`]; returns its kind.
pub fn classify(endpoint: &str, body: &Body, sender: &str) -> Result<&'static str, Rejection> {
    let xml = body.text.as_str();
    match endpoint {
        "MP_DdrEndpoint" => {
            let what = "discovery report";
            let r = parse_report(xml, sender, what)?;
            check_action(&r, DISCOVERY_ACTION, what)?;
            match report_type(&r) {
                "Full" => Ok("ddr"),
                other => Err(bad(what, format!("ReportType {other:?}, expected Full"))),
            }
        }
        "MP_HinvEndpoint" => {
            let what = "hardware inventory report";
            let r = parse_report(xml, sender, what)?;
            check_action(&r, HARDWARE_ACTION, what)?;
            match report_type(&r) {
                "Full" => Ok("hinv-full"),
                "Delta" => Ok("hinv-delta"),
                other => Err(bad(
                    what,
                    format!("ReportType {other:?}, expected Full or Delta"),
                )),
            }
        }
        "StatusReceiver" => {
            let what = "status message";
            check_no_dtd(xml)?;
            let x = strip_xml_declaration(xml);
            check_root(x, "Status", what)?;
            let s: Status = parse(x, what)?;
            if s.kind.trim().is_empty() {
                return Err(bad(what, "empty Type"));
            }
            let props = s.properties.unwrap_or_default().properties;
            for p in props
                .iter()
                .filter(|p| p.name.as_deref() == Some("ClientID"))
            {
                let v = p.value.as_deref().unwrap_or("").trim();
                if normalize_smsid(v).as_deref() != Some(sender) {
                    return Err(bad(
                        what,
                        format!("ClientID property {v:?} is not the sender's SourceID {sender}"),
                    ));
                }
            }
            Ok("status")
        }
        "MP_RelayEndpoint" => {
            let what = "state message report";
            if !xml.starts_with("<?xml") {
                return Err(bad(
                    what,
                    "relay messages must start with an <?xml …?> declaration",
                ));
            }
            let r = parse_report(xml, sender, what)?;
            let msgs = r.body.map(|b| b.state_messages).unwrap_or_default();
            if msgs.is_empty() {
                return Err(bad(what, "no StateMessage in the ReportBody"));
            }
            for (i, m) in msgs.iter().enumerate() {
                let has = |a: &Option<IdAttr>| {
                    a.as_ref()
                        .and_then(|a| a.id.as_deref())
                        .is_some_and(|s| !s.trim().is_empty())
                };
                if !has(&m.topic) || !has(&m.state) {
                    return Err(bad(
                        what,
                        format!("StateMessage {i} needs Topic ID and State ID"),
                    ));
                }
            }
            Ok("state")
        }
        other => Err(Rejection::new(format!("unsupported endpoint {other:?}"))),
    }
}

/// The endpoints whose reports travel as body + attachment (docs/protocol.md §5 report framing).
const ATTACHMENT_ENDPOINTS: [&str; 2] = ["MP_DdrEndpoint", "MP_HinvEndpoint"];

/// The report a message carries, as [`classify`] and [`store`] take it. Discovery and inventory
/// (docs/protocol.md §5): with an attachment, the body must be the header-only report of the same
/// sender and the attachment (`FF FE` + UTF-16LE) the full report, which is what is kept; as a
/// single body, the body itself, unless `strict`: a real MP answers that 200 and drops it, and so
/// do we ([`Rejection::quietly`]). Other endpoints: the body (attachments are not theirs to carry).
pub fn report_of(
    endpoint: &str,
    body: Body,
    sender: &str,
    strict: bool,
) -> Result<Body, Rejection> {
    if !ATTACHMENT_ENDPOINTS.contains(&endpoint) {
        if !body.attachments.is_empty() {
            return Err(Rejection::new(format!(
                "{endpoint} messages carry no attachment, this one has {}",
                body.attachments.len()
            )));
        }
        return Ok(body);
    }
    let what = if endpoint == "MP_DdrEndpoint" {
        "discovery report"
    } else {
        "hardware inventory report"
    };
    match body.attachments.as_slice() {
        [] if strict => Err(Rejection::new(format!(
            "{what} sent as a single body: a real MP answers 200 and drops it (discovery and \
             inventory travel as body + attachment, docs/protocol.md §5)"
        ))
        .quietly()),
        [] => Ok(body),
        [attachment] => {
            let head = parse_report(&body.text, sender, what)?;
            if head.body.is_some_and(|b| !b.instances.is_empty()) {
                return Err(bad(
                    what,
                    "the body must be the header-only report when the full one is attached",
                ));
            }
            let text = super::envelope::decode_attachment(attachment)
                .map_err(|e| bad(&format!("{what} attachment"), e))?;
            Ok(Body {
                bytes: Vec::new(),
                text,
                attachments: Vec::new(),
            })
        }
        more => Err(bad(
            what,
            format!("{} attachments, expected the one full report", more.len()),
        )),
    }
}

/// The header `ID`, normalised for de-duplication (`{GUID}` upper case).
pub fn message_id(header: &MsgHeader) -> String {
    header.id.trim().to_ascii_uppercase()
}

/// Stores an authenticated, shape-checked message; false if it was a duplicate (nothing stored).
/// `message_id` as [`message_id`] gives it, `sent_time` the header's, trimmed.
pub fn store(
    db: &SiteDb,
    message_id: &str,
    sent_time: Option<&str>,
    sender: &Sender,
    endpoint: &str,
    kind: &str,
    body: &Body,
) -> Result<bool, Rejection> {
    db.store_message(&NewMessage {
        message_id,
        smsid: &sender.smsid,
        endpoint,
        kind,
        via_proxy: sender.via_proxy.as_deref(),
        sent_time,
        body: &body.text,
    })
    .map_err(|e| Rejection::internal(format!("site database: {e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42";

    fn body(xml: &str) -> Body {
        Body {
            bytes: Vec::new(),
            text: xml.to_string(),
            ..Default::default()
        }
    }

    fn report(action: &str, rtype: &str, body_xml: &str) -> String {
        format!(
            "<Report><ReportHeader><Identification><Machine><ClientInstalled>0</ClientInstalled>\
             <ClientType>1</ClientType><ClientID>{}</ClientID><NetBIOSName>DEV</NetBIOSName>\
             </Machine></Identification><ReportDetails><ReportContent>Inventory Data</ReportContent>\
             <ReportType>{rtype}</ReportType><Date>20261123100000.000000+000</Date>\
             <Version>1.0</Version><Format>1.1</Format></ReportDetails>\
             <InventoryAction ActionType=\"Predefined\"><InventoryActionID>{action}</InventoryActionID>\
             <Description>x</Description></InventoryAction></ReportHeader>{body_xml}</Report>",
            ID.to_ascii_lowercase()
        )
    }

    const INST: &str = "<ReportBody><Instance Content=\"New\" Namespace=\"\\\\DEV\\root\\cimv2\" \
         Class=\"Win32_Foo\" ParentClass=\"Win32_Foo\"><Win32_Foo><A>1</A></Win32_Foo></Instance>\
         <Instance Content=\"Delete\" Class=\"Bar\"><Bar/></Instance></ReportBody>";

    fn attached(head: &str, full: &str) -> Body {
        let mut att = vec![0xFF, 0xFE];
        att.extend(full.encode_utf16().flat_map(u16::to_le_bytes));
        Body {
            attachments: vec![att],
            ..body(head)
        }
    }

    #[test]
    fn reports_come_from_the_attachment_and_malformed_framing_is_refused() {
        let head = report(DISCOVERY_ACTION, "Full", "<ReportBody/>");
        let full = report(DISCOVERY_ACTION, "Full", INST);
        let got = report_of("MP_DdrEndpoint", attached(&head, &full), ID, true).unwrap();
        assert_eq!(got.text, full);
        // Single body: kept when not strict, dropped quietly when strict.
        assert_eq!(
            report_of("MP_DdrEndpoint", body(&full), ID, false)
                .unwrap()
                .text,
            full
        );
        let quiet = report_of("MP_HinvEndpoint", body(&full), ID, true).unwrap_err();
        assert!(
            quiet.quiet && quiet.reason.contains("single body"),
            "{quiet:?}"
        );
        // A body that is not the header-only report, an attachment without BOM or with a NUL,
        // two attachments, an attachment where none belongs: refused with a reason (403).
        let cases = [
            ("MP_DdrEndpoint", attached(&full, &full), "header-only"),
            (
                "MP_DdrEndpoint",
                Body {
                    attachments: vec![b"<\0R\0".to_vec()],
                    ..body(&head)
                },
                "BOM",
            ),
            (
                "MP_DdrEndpoint",
                attached(&head, &format!("{full}\0")),
                "NUL",
            ),
            (
                "MP_DdrEndpoint",
                Body {
                    attachments: vec![vec![0xFF, 0xFE], vec![0xFF, 0xFE]],
                    ..body(&head)
                },
                "2 attachments",
            ),
            (
                "StatusReceiver",
                attached(&head, &full),
                "carry no attachment",
            ),
            (
                "MP_DdrEndpoint",
                attached("<Report/>", &full),
                "discovery report",
            ),
        ];
        for (ep, b, needle) in cases {
            let e = report_of(ep, b, ID, true).unwrap_err();
            assert!(!e.quiet && e.reason.contains(needle), "{needle}: {e:?}");
        }
    }

    #[test]
    fn good_shapes() {
        let ddr = report(DISCOVERY_ACTION, "Full", "<ReportBody />");
        assert_eq!(classify("MP_DdrEndpoint", &body(&ddr), ID).unwrap(), "ddr");
        let ddr = report(DISCOVERY_ACTION, "Full", INST);
        assert_eq!(classify("MP_DdrEndpoint", &body(&ddr), ID).unwrap(), "ddr");
        let hinv = report(HARDWARE_ACTION, "Delta", INST);
        assert_eq!(
            classify("MP_HinvEndpoint", &body(&hinv), ID).unwrap(),
            "hinv-delta"
        );
        let status = "<Status><Type>Milestone</Type><Properties><Property Name=\"a\" Value=\"b\"/>\
                      <Property Name=\"ClientID\" Value=\"guid:1af488d8-7b42-4842-a4bd-b3a2842bbc42\"/></Properties><Qualifiers><Qualifier Name=\"q\" Value=\"1\"/></Qualifiers></Status>";
        assert_eq!(
            classify("StatusReceiver", &body(status), ID).unwrap(),
            "status"
        );
        let state = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-16\"?>{}",
            report(
                "{00000000-0000-0000-0000-000000000111}",
                "Full",
                "<ReportBody><StateMessage><Topic ID=\"t\" Type=\"500\" IDType=\"0\"/>\
                 <State ID=\"2\" Criticality=\"0\"/><StateDetails Type=\"1\"><![CDATA[<x/>]]>\
                 </StateDetails></StateMessage></ReportBody>"
            )
        );
        assert_eq!(
            classify("MP_RelayEndpoint", &body(&state), ID).unwrap(),
            "state"
        );
    }

    #[test]
    fn bad_shapes() {
        let other = "GUID:00000000-0000-0000-0000-000000000001";
        let cases = [
            (
                "MP_DdrEndpoint",
                report(DISCOVERY_ACTION, "Full", ""),
                other,
                "is not the sender",
            ),
            (
                "MP_DdrEndpoint",
                report(HARDWARE_ACTION, "Full", ""),
                ID,
                "InventoryActionID",
            ),
            (
                "MP_DdrEndpoint",
                report(DISCOVERY_ACTION, "Delta", ""),
                ID,
                "expected Full",
            ),
            (
                "MP_HinvEndpoint",
                report(HARDWARE_ACTION, "Partial", ""),
                ID,
                "Full or Delta",
            ),
            (
                "MP_HinvEndpoint",
                report(HARDWARE_ACTION, "Full", &INST.replace("Delete", "Remove")),
                ID,
                "Content",
            ),
            (
                "MP_HinvEndpoint",
                report(HARDWARE_ACTION, "Full", &INST.replace("<Bar/>", "<Baz/>")),
                ID,
                "exactly one <Bar>",
            ),
            (
                "MP_HinvEndpoint",
                report(
                    HARDWARE_ACTION,
                    "Full",
                    &INST.replace("<Bar/>", "<Bar/><X/>"),
                ),
                ID,
                "exactly one <Bar>",
            ),
            (
                "MP_HinvEndpoint",
                format!("{}<Report/>", report(HARDWARE_ACTION, "Full", "")),
                ID,
                "",
            ),
            (
                "MP_DdrEndpoint",
                "<Status><Type>x</Type></Status>".into(),
                ID,
                "root element is Status",
            ),
            (
                "StatusReceiver",
                "<Status><Type> </Type></Status>".into(),
                ID,
                "empty Type",
            ),
            ("StatusReceiver", "<Status/>".into(), ID, "Type"),
            (
                "StatusReceiver",
                format!("<Status><Type>x</Type><Properties><Property Name=\"ClientID\" Value=\"{other}\"/></Properties></Status>"),
                ID,
                "ClientID property",
            ),
            (
                "MP_RelayEndpoint",
                report(DISCOVERY_ACTION, "Full", "<ReportBody/>"),
                ID,
                "<?xml",
            ),
            (
                "MP_RelayEndpoint",
                format!(
                    "<?xml version=\"1.0\"?>{}",
                    report(DISCOVERY_ACTION, "Full", "<ReportBody/>")
                ),
                ID,
                "no StateMessage",
            ),
            (
                "MP_RelayEndpoint",
                format!(
                    "<?xml version=\"1.0\"?>{}",
                    report(
                        DISCOVERY_ACTION,
                        "Full",
                        "<ReportBody><StateMessage><Topic ID=\"t\"/></StateMessage></ReportBody>"
                    )
                ),
                ID,
                "State ID",
            ),
            (
                "MP_DdrEndpoint",
                format!(
                    "<!DOCTYPE r [<!ENTITY e \"x\">]>{}",
                    report(DISCOVERY_ACTION, "Full", "")
                ),
                ID,
                "document type",
            ),
        ];
        for (ep, xml, sender, needle) in cases {
            let e = classify(ep, &body(&xml), sender).unwrap_err();
            assert!(e.reason.contains(needle), "{ep} {xml}: {}", e.reason);
            assert!(!e.internal);
        }
    }
}
