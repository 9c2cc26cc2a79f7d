//! `<Report>` bodies (docs/protocol.md §5): discovery data / heartbeat (`MP_DdrEndpoint`) and
//! hardware inventory (`MP_HinvEndpoint`), plus the report header pieces the state message shares.
//!
//! ```text
//! <Report><ReportHeader><Identification><Machine><ClientInstalled>…<ClientType>…<ClientID>GUID:…</ClientID>
//!   <ClientVersion>…<NetBIOSName>…<CodePage>…<SystemDefaultLCID>…</Machine></Identification>
//!   <ReportDetails><ReportContent>Inventory Data</ReportContent><ReportType>Full</ReportType><Date>{WMI}</Date>
//!   <Version>1.0</Version><Format>1.1</Format></ReportDetails>
//!   <InventoryAction ActionType="Predefined"><InventoryActionID>{…0003}</InventoryActionID>
//!   <Description>Discovery</Description><InventoryActionLastUpdateTime>{WMI}</InventoryActionLastUpdateTime>
//!   </InventoryAction></ReportHeader>
//! <ReportBody><Instance Content="New" Namespace="\\HOST\root\cimv2" Class="X" ParentClass="X"><X><P>v</P>…</X></Instance>…</ReportBody></Report>
//! ```
//!
//! **Inventory without allocation.** The appliance describes its instances through an
//! [`InstanceSource`]: a deterministic function that writes them into an [`InstanceWriter`] each
//! time the report is emitted (once into the hasher, once into the counter, then once per window
//! of the transport). Nothing of the inventory is ever held in RAM by the core, so a 64 kB
//! inventory streams through a buffer of a few hundred bytes.

use core::fmt::Write as _;

use crate::guid::Smsid;
use crate::profile;
use crate::sink::{Emit, Overflow, Sink};
use crate::time::DateTime;
use crate::wire::xml::{ascii_str, fmt_u64, markup, raw, Escaping, XmlWriter};

/// Longest `Namespace` attribute value: `\\` + a 255-byte host + `\root\cimv2` and some room.
pub const MAX_NAMESPACE_LEN: usize = 300;

/// Whether `s` is a name we accept as an element name (WMI class and property names): an ASCII
/// letter or `_`, then ASCII letters, digits, `_`, `-` or `.`. Emitting an instance or property
/// with any other name fails (with [`Overflow`], the only error an emission carries), so check
/// names when the inventory description is built.
pub fn is_xml_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The `<Machine>` identification of every report (docs/protocol.md §5). Construct with
/// [`ReportIdentity::new`], which fills the [profile] fields from [`crate::profile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReportIdentity<'a> {
    /// `ClientID`: the SMSID the report is about (the message's `SourceID`).
    pub smsid: Smsid,
    /// `NetBIOSName` (also the host in `\\HOST\root\…` namespaces).
    pub netbios_name: &'a str,
    /// `ClientInstalled` ([profile] [`profile::REPORT_CLIENT_INSTALLED`]).
    pub client_installed: u32,
    /// `ClientType` ([profile] [`profile::REPORT_CLIENT_TYPE`]).
    pub client_type: u32,
    /// `ClientVersion` ([profile] [`profile::REPORT_CLIENT_VERSION`]).
    pub client_version: &'a str,
    /// `CodePage` ([profile] [`profile::REPORT_CODE_PAGE`]).
    pub code_page: u32,
    /// `SystemDefaultLCID` ([profile] [`profile::REPORT_SYSTEM_DEFAULT_LCID`]).
    pub system_default_lcid: u32,
}

impl<'a> ReportIdentity<'a> {
    /// The identification of `smsid` on the machine `netbios_name`, with the profile's defaults.
    pub fn new(smsid: Smsid, netbios_name: &'a str) -> Self {
        Self {
            smsid,
            netbios_name,
            client_installed: profile::REPORT_CLIENT_INSTALLED,
            client_type: profile::REPORT_CLIENT_TYPE,
            client_version: profile::REPORT_CLIENT_VERSION,
            code_page: profile::REPORT_CODE_PAGE,
            system_default_lcid: profile::REPORT_SYSTEM_DEFAULT_LCID,
        }
    }
}

/// `<Identification><Machine>…</Machine></Identification>` (one writer call).
pub(crate) fn write_identification(
    w: &mut XmlWriter<'_>,
    id: &ReportIdentity<'_>,
) -> Result<(), Overflow> {
    let (mut a, mut b, mut c, mut d) = ([0u8; 20], [0u8; 20], [0u8; 20], [0u8; 20]);
    let client_id = id.smsid.to_text();
    w.parts(&[
        markup!("<Identification><Machine><ClientInstalled>"),
        (fmt_u64(id.client_installed.into(), &mut a), Escaping::Text),
        markup!("</ClientInstalled><ClientType>"),
        (fmt_u64(id.client_type.into(), &mut b), Escaping::Text),
        markup!("</ClientType><ClientID>"),
        (ascii_str(&client_id)?, Escaping::Raw),
        markup!("</ClientID><ClientVersion>"),
        (id.client_version, Escaping::Text),
        markup!("</ClientVersion><NetBIOSName>"),
        (id.netbios_name, Escaping::Text),
        markup!("</NetBIOSName><CodePage>"),
        (fmt_u64(id.code_page.into(), &mut c), Escaping::Text),
        markup!("</CodePage><SystemDefaultLCID>"),
        (
            fmt_u64(id.system_default_lcid.into(), &mut d),
            Escaping::Text,
        ),
        markup!("</SystemDefaultLCID></Machine></Identification>"),
    ])
}

/// `ReportType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReportType {
    /// Everything the client has (discovery is always full).
    Full,
    /// Changes since the last report (`Instance Content="New|Update|Delete"`).
    Delta,
}

impl ReportType {
    /// The wire text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "Full",
            Self::Delta => "Delta",
        }
    }
}

/// `<ReportDetails><Version>`: `major.minor`. Hardware inventory deltas carry increasing versions
/// so the site can notice a missed delta; discovery uses 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReportVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl Default for ReportVersion {
    fn default() -> Self {
        Self { major: 1, minor: 0 }
    }
}

/// `<ReportDetails>…</ReportDetails>` (one writer call).
pub(crate) fn write_report_details(
    w: &mut XmlWriter<'_>,
    content: &str,
    report_type: ReportType,
    date: &DateTime,
    version: ReportVersion,
    format: &str,
) -> Result<(), Overflow> {
    let mut a = [0u8; 20];
    let mut b = [0u8; 20];
    let date = date.wmi();
    w.parts(&[
        markup!("<ReportDetails><ReportContent>"),
        (content, Escaping::Text),
        markup!("</ReportContent><ReportType>"),
        (report_type.as_str(), Escaping::Text),
        markup!("</ReportType><Date>"),
        (ascii_str(&date)?, Escaping::Raw),
        markup!("</Date><Version>"),
        (fmt_u64(version.major.into(), &mut a), Escaping::Raw),
        markup!("."),
        (fmt_u64(version.minor.into(), &mut b), Escaping::Raw),
        markup!("</Version><Format>"),
        (format, Escaping::Text),
        markup!("</Format></ReportDetails>"),
    ])
}

/// What a `<Report>` reports: fixes the `InventoryActionID`, its description and the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReportKind {
    /// Discovery data record / heartbeat: `{…0003}`, `MP_DdrEndpoint`.
    Discovery,
    /// Hardware inventory: `{…0001}`, `MP_HinvEndpoint`.
    HardwareInventory,
}

impl ReportKind {
    /// `InventoryActionID` (docs/protocol.md §5, confirmed).
    pub fn inventory_action_id(self) -> &'static str {
        match self {
            Self::Discovery => "{00000000-0000-0000-0000-000000000003}",
            Self::HardwareInventory => "{00000000-0000-0000-0000-000000000001}",
        }
    }
    /// `<InventoryAction><Description>` (the InventoryAction WMI class: Hardware, Software,
    /// Discovery).
    pub fn description(self) -> &'static str {
        match self {
            Self::Discovery => "Discovery",
            Self::HardwareInventory => "Hardware",
        }
    }
    /// The target endpoint.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::Discovery => crate::wire::header::endpoint::DDR,
            Self::HardwareInventory => crate::wire::header::endpoint::HINV,
        }
    }
}

/// `Instance/@Content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InstanceContent {
    /// A new instance (every instance of a full report).
    New,
    /// A changed instance (delta).
    Update,
    /// A removed instance (delta).
    Delete,
}

impl InstanceContent {
    /// The wire text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "New",
            Self::Update => "Update",
            Self::Delete => "Delete",
        }
    }
}

/// `Instance/@Namespace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Namespace<'a> {
    /// `\\HOST\root\cimv2` (hardware inventory classes, docs/protocol.md §5).
    Cimv2,
    /// `\\HOST\root\ccm` (the client's own discovery classes, as the public tools send them).
    Ccm,
    /// Exactly this text.
    Custom(&'a str),
}

impl<'a> Namespace<'a> {
    /// The text in three pieces (written one after the other, each escaped as an attribute
    /// value: the same bytes as the whole text escaped). Refused with [`Overflow`] when the text
    /// is longer than [`MAX_NAMESPACE_LEN`] bytes.
    fn pieces<'h>(&self, host: &'h str) -> Result<[&'h str; 3], Overflow>
    where
        'a: 'h,
    {
        let pieces = match *self {
            Namespace::Cimv2 => ["\\\\", host, "\\root\\cimv2"],
            Namespace::Ccm => ["\\\\", host, "\\root\\ccm"],
            Namespace::Custom(s) => [s, "", ""],
        };
        let len = pieces.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
        if len > MAX_NAMESPACE_LEN {
            return Err(Overflow);
        }
        Ok(pieces)
    }
}

/// Describes an inventory (or discovery) without holding it: called once per emission pass,
/// it writes every instance into `w`. **Must be deterministic**: every call writes the same
/// instances with the same values (the bytes are hashed in one pass and sent in later ones).
/// Propagate the writer's errors with `?`: an error also means "stop, this window is full".
pub trait InstanceSource {
    /// Write the instances.
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow>;
}

impl<F: Fn(&mut InstanceWriter<'_, '_>) -> Result<(), Overflow>> InstanceSource for F {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        self(w)
    }
}

/// No instances (`<ReportBody></ReportBody>`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInstances;

impl InstanceSource for NoInstances {
    fn write_instances(&self, _: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        Ok(())
    }
}

/// Writes `<Instance>` elements into the report body.
pub struct InstanceWriter<'w, 's> {
    xml: &'w mut XmlWriter<'s>,
    host: &'w str,
    /// Index of the next instance, and how many from there the sink said to leave out
    /// ([`crate::sink::Sink::sequence_item`]: a window pass jumping over them).
    next: usize,
    leave_out: usize,
}

impl<'w, 's> InstanceWriter<'w, 's> {
    /// A writer for instances of the machine `host` (used in [`Namespace::Cimv2`] / `Ccm`).
    pub fn new(xml: &'w mut XmlWriter<'s>, host: &'w str) -> Self {
        Self {
            xml,
            host,
            next: 0,
            leave_out: 0,
        }
    }

    /// The machine name the namespaces use.
    pub fn host(&self) -> &str {
        self.host
    }

    /// `<Instance Content Namespace Class ParentClass><class>…props…</class></Instance>`.
    /// `class` must satisfy [`is_xml_name`].
    pub fn instance<F>(
        &mut self,
        content: InstanceContent,
        namespace: Namespace<'_>,
        class: &str,
        props: F,
    ) -> Result<(), Overflow>
    where
        F: FnOnce(&mut PropWriter<'_, 's>) -> Result<(), Overflow>,
    {
        let index = self.next;
        self.next = index.saturating_add(1);
        if self.leave_out == 0 {
            self.leave_out = self.xml.sequence_item(index)?;
        }
        if self.leave_out > 0 {
            self.leave_out -= 1;
            return Ok(());
        }
        if !is_xml_name(class) {
            return Err(Overflow);
        }
        let [ns0, ns1, ns2] = namespace.pieces(self.host)?;
        let w = &mut *self.xml;
        // One piece: `<Instance Content="…" Namespace="…" Class="…" ParentClass="…"><class>`.
        w.parts(&[
            markup!("<Instance Content=\""),
            (content.as_str(), Escaping::Attr),
            markup!("\" Namespace=\""),
            (ns0, Escaping::Attr),
            (ns1, Escaping::Attr),
            (ns2, Escaping::Attr),
            markup!("\" Class=\""),
            (class, Escaping::Attr),
            markup!("\" ParentClass=\""),
            (class, Escaping::Attr),
            markup!("\"><"),
            (class, Escaping::Raw),
            markup!(">"),
        ])?;
        props(&mut PropWriter { xml: w })?;
        w.parts(&[
            markup!("</"),
            (class, Escaping::Raw),
            markup!("></Instance>"),
        ])
    }
}

/// Writes the properties of one instance: `<Name>value</Name>`, repeated for array properties.
pub struct PropWriter<'w, 's> {
    xml: &'w mut XmlWriter<'s>,
}

struct TextAdapter<'a, 'w, 's>(&'a mut PropWriter<'w, 's>);

impl core::fmt::Write for TextAdapter<'_, '_, '_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.xml.text(s).map_err(|_| core::fmt::Error)
    }
}

impl PropWriter<'_, '_> {
    fn open(&mut self, name: &str) -> Result<(), Overflow> {
        if !is_xml_name(name) {
            return Err(Overflow);
        }
        self.xml.open(name)?;
        self.xml.close()
    }

    /// `<name>value</name>` with the value escaped. `name` must satisfy [`is_xml_name`].
    pub fn prop(&mut self, name: &str, value: &str) -> Result<(), Overflow> {
        if !is_xml_name(name) {
            return Err(Overflow);
        }
        self.xml.element(name, value)
    }

    /// An unsigned number.
    pub fn prop_u64(&mut self, name: &str, value: u64) -> Result<(), Overflow> {
        let mut buf = [0u8; 20];
        self.prop(name, fmt_u64(value, &mut buf))
    }

    /// A signed number.
    pub fn prop_i64(&mut self, name: &str, value: i64) -> Result<(), Overflow> {
        self.prop_fmt(name, format_args!("{value}"))
    }

    /// A WMI datetime (`YYYYMMDDhhmmss.ffffff+000`).
    pub fn prop_datetime(&mut self, name: &str, value: &DateTime) -> Result<(), Overflow> {
        if !is_xml_name(name) {
            return Err(Overflow);
        }
        self.xml.element_ascii(name, &value.wmi())
    }

    /// A value formatted on the fly (`format_args!`), escaped; nothing is buffered.
    pub fn prop_fmt(
        &mut self,
        name: &str,
        value: core::fmt::Arguments<'_>,
    ) -> Result<(), Overflow> {
        self.open(name)?;
        TextAdapter(self).write_fmt(value).map_err(|_| Overflow)?;
        self.xml.end(name)
    }
}

/// An instance given as data, for small fixed descriptions (see [`StaticInstances`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticInstance<'a> {
    /// New, Update or Delete.
    pub content: InstanceContent,
    /// Where the class lives.
    pub namespace: Namespace<'a>,
    /// The WMI class.
    pub class: &'a str,
    /// `(property, value)` pairs, in order (repeat a name for array properties).
    pub properties: &'a [(&'a str, &'a str)],
}

/// A slice of [`StaticInstance`]s as an [`InstanceSource`].
#[derive(Debug, Clone, Copy)]
pub struct StaticInstances<'a>(pub &'a [StaticInstance<'a>]);

impl InstanceSource for StaticInstances<'_> {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        for i in self.0 {
            w.instance(i.content, i.namespace, i.class, |p| {
                for (name, value) in i.properties {
                    p.prop(name, value)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// The discovery instances an appliance's heartbeat DDR carries ([profile]: the class set is
/// ours, modelled on what the public tools send; all in `root\ccm` but the network adapter).
#[derive(Debug, Clone, Copy)]
pub struct BasicDiscovery<'a> {
    /// `CCM_ExtNetworkAdapterConfiguration/FQDN`.
    pub fqdn: &'a str,
    /// `CCM_Client/ClientVersion`.
    pub client_version: &'a str,
    /// `CCM_DiscoveryData/PlatformID` (e.g. [`profile::DISCOVERY_PLATFORM_ID`]).
    pub platform_id: &'a str,
    /// `CCM_ComputerSystem/Domain`, when the appliance knows one.
    pub domain: Option<&'a str>,
    /// `Win32_NetworkAdapterConfiguration/IPAddress` (omitted with the MACs when both are empty).
    pub ip_addresses: &'a [&'a str],
    /// `Win32_NetworkAdapterConfiguration/MACAddress`.
    pub mac_addresses: &'a [&'a str],
}

impl InstanceSource for BasicDiscovery<'_> {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        let new = InstanceContent::New;
        if let Some(domain) = self.domain {
            w.instance(new, Namespace::Ccm, "CCM_ComputerSystem", |p| {
                p.prop("Domain", domain)
            })?;
        }
        w.instance(new, Namespace::Ccm, "CCM_Client", |p| {
            p.prop("ClientVersion", self.client_version)
        })?;
        w.instance(
            new,
            Namespace::Ccm,
            "CCM_ExtNetworkAdapterConfiguration",
            |p| p.prop("FQDN", self.fqdn),
        )?;
        w.instance(new, Namespace::Ccm, "CCM_DiscoveryData", |p| {
            p.prop("PlatformID", self.platform_id)
        })?;
        if !self.ip_addresses.is_empty() || !self.mac_addresses.is_empty() {
            w.instance(
                new,
                Namespace::Cimv2,
                "Win32_NetworkAdapterConfiguration",
                |p| {
                    for ip in self.ip_addresses {
                        p.prop("IPAddress", ip)?;
                    }
                    p.prop_u64("Index", 1)?;
                    for mac in self.mac_addresses {
                        p.prop("MACAddress", mac)?;
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }
}

/// A discovery (DDR / heartbeat) or hardware inventory report.
#[derive(Clone, Copy)]
pub struct Report<'a> {
    /// Discovery or hardware inventory.
    pub kind: ReportKind,
    /// Who the report is about.
    pub identity: ReportIdentity<'a>,
    /// Full or Delta (discovery: Full).
    pub report_type: ReportType,
    /// `<Version>` (1.0 unless counting deltas).
    pub version: ReportVersion,
    /// `<Date>` and `InventoryActionLastUpdateTime`, in the WMI form.
    pub date: DateTime,
    /// The instances.
    pub instances: &'a dyn InstanceSource,
}

impl<'a> Report<'a> {
    /// A discovery data record / heartbeat (Full, version 1.0) to `MP_DdrEndpoint`.
    pub fn discovery(
        identity: ReportIdentity<'a>,
        date: DateTime,
        instances: &'a dyn InstanceSource,
    ) -> Self {
        Self {
            kind: ReportKind::Discovery,
            identity,
            report_type: ReportType::Full,
            version: ReportVersion::default(),
            date,
            instances,
        }
    }

    /// A hardware inventory report to `MP_HinvEndpoint`.
    pub fn hardware_inventory(
        identity: ReportIdentity<'a>,
        report_type: ReportType,
        version: ReportVersion,
        date: DateTime,
        instances: &'a dyn InstanceSource,
    ) -> Self {
        Self {
            kind: ReportKind::HardwareInventory,
            identity,
            report_type,
            version,
            date,
            instances,
        }
    }
}

impl Emit for Report<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            raw!(w, "<Report><ReportHeader>")?;
            write_identification(w, &self.identity)?;
            write_report_details(
                w,
                profile::INVENTORY_REPORT_CONTENT,
                self.report_type,
                &self.date,
                self.version,
                profile::INVENTORY_REPORT_FORMAT,
            )?;
            let updated = self.date.wmi();
            w.parts(&[
                markup!("<InventoryAction ActionType=\"Predefined\"><InventoryActionID>"),
                (self.kind.inventory_action_id(), Escaping::Raw),
                markup!("</InventoryActionID><Description>"),
                (self.kind.description(), Escaping::Text),
                markup!("</Description><InventoryActionLastUpdateTime>"),
                (ascii_str(&updated)?, Escaping::Raw),
                markup!(
                    "</InventoryActionLastUpdateTime></InventoryAction></ReportHeader><ReportBody>"
                ),
            ])?;
            self.instances
                .write_instances(&mut InstanceWriter::new(w, self.identity.netbios_name))?;
            raw!(w, "</ReportBody></Report>")
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::sink::{emitted_len, SliceSink, WindowSink};
    use crate::time::UnixTime;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    fn text(item: &dyn Emit) -> String {
        let mut v = vec![0u8; emitted_len(item).unwrap()];
        let mut s = SliceSink::new(&mut v);
        item.emit(&mut s).unwrap();
        assert_eq!(s.len(), v.len());
        char::decode_utf16(v.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
            .map(|c| c.unwrap())
            .collect()
    }

    fn identity() -> ReportIdentity<'static> {
        ReportIdentity::new(
            Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap(),
            "PRN-1",
        )
    }

    const DATE: DateTime = DateTime {
        year: 2026,
        month: 11,
        day: 23,
        hour: 10,
        minute: 0,
        second: 0,
    };

    #[test]
    fn ddr_matches_the_spec_template() {
        let disco = BasicDiscovery {
            fqdn: "prn-1.corp.example",
            client_version: "5.00.8325.0000",
            platform_id: "mpagent appliance",
            domain: None,
            ip_addresses: &["10.0.0.7"],
            mac_addresses: &["00:11:22:33:44:55"],
        };
        let r = Report::discovery(identity(), DATE, &disco);
        let want = std::format!(
            "<Report><ReportHeader><Identification><Machine><ClientInstalled>{ci}</ClientInstalled>\
<ClientType>{ct}</ClientType><ClientID>GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42</ClientID>\
<ClientVersion>{cv}</ClientVersion><NetBIOSName>PRN-1</NetBIOSName><CodePage>{cp}</CodePage>\
<SystemDefaultLCID>{lcid}</SystemDefaultLCID></Machine></Identification><ReportDetails>\
<ReportContent>Inventory Data</ReportContent><ReportType>Full</ReportType>\
<Date>20261123100000.000000+000</Date><Version>1.0</Version><Format>1.1</Format></ReportDetails>\
<InventoryAction ActionType=\"Predefined\"><InventoryActionID>{{00000000-0000-0000-0000-000000000003}}</InventoryActionID>\
<Description>Discovery</Description><InventoryActionLastUpdateTime>20261123100000.000000+000</InventoryActionLastUpdateTime>\
</InventoryAction></ReportHeader><ReportBody>\
<Instance Content=\"New\" Namespace=\"\\\\PRN-1\\root\\ccm\" Class=\"CCM_Client\" ParentClass=\"CCM_Client\"><CCM_Client><ClientVersion>5.00.8325.0000</ClientVersion></CCM_Client></Instance>\
<Instance Content=\"New\" Namespace=\"\\\\PRN-1\\root\\ccm\" Class=\"CCM_ExtNetworkAdapterConfiguration\" ParentClass=\"CCM_ExtNetworkAdapterConfiguration\"><CCM_ExtNetworkAdapterConfiguration><FQDN>prn-1.corp.example</FQDN></CCM_ExtNetworkAdapterConfiguration></Instance>\
<Instance Content=\"New\" Namespace=\"\\\\PRN-1\\root\\ccm\" Class=\"CCM_DiscoveryData\" ParentClass=\"CCM_DiscoveryData\"><CCM_DiscoveryData><PlatformID>mpagent appliance</PlatformID></CCM_DiscoveryData></Instance>\
<Instance Content=\"New\" Namespace=\"\\\\PRN-1\\root\\cimv2\" Class=\"Win32_NetworkAdapterConfiguration\" ParentClass=\"Win32_NetworkAdapterConfiguration\"><Win32_NetworkAdapterConfiguration><IPAddress>10.0.0.7</IPAddress><Index>1</Index><MACAddress>00:11:22:33:44:55</MACAddress></Win32_NetworkAdapterConfiguration></Instance>\
</ReportBody></Report>",
            ci = profile::REPORT_CLIENT_INSTALLED,
            ct = profile::REPORT_CLIENT_TYPE,
            cv = profile::REPORT_CLIENT_VERSION,
            cp = profile::REPORT_CODE_PAGE,
            lcid = profile::REPORT_SYSTEM_DEFAULT_LCID,
        );
        assert_eq!(text(&r), want);
    }

    #[test]
    fn hardware_inventory_delta_with_escaping_and_custom_namespace() {
        let src = |w: &mut InstanceWriter<'_, '_>| {
            w.instance(
                InstanceContent::Update,
                Namespace::Cimv2,
                "Win32_PhysicalMemory",
                |p| {
                    p.prop_u64("Capacity", 1 << 30)?;
                    p.prop("Manufacturer", "A&B <\"x\">")?;
                    p.prop_i64("Offset", -5)?;
                    p.prop_fmt("Speed", format_args!("{} MHz", 3200))?;
                    p.prop_datetime("InstallDate", &UnixTime(0).to_datetime())
                },
            )?;
            w.instance(
                InstanceContent::Delete,
                Namespace::Custom("\\\\X\\root\\a\"b"),
                "SMS_Authority",
                |_| Ok(()),
            )
        };
        let r = Report::hardware_inventory(
            identity(),
            ReportType::Delta,
            ReportVersion {
                major: 3,
                minor: 12,
            },
            DATE,
            &src,
        );
        let t = text(&r);
        assert!(t.contains("<InventoryActionID>{00000000-0000-0000-0000-000000000001}</InventoryActionID><Description>Hardware</Description>"), "{t}");
        assert!(t.contains("<ReportType>Delta</ReportType>"));
        assert!(t.contains("<Version>3.12</Version>"));
        assert!(t.contains("<ReportBody><Instance Content=\"Update\" Namespace=\"\\\\PRN-1\\root\\cimv2\" Class=\"Win32_PhysicalMemory\" ParentClass=\"Win32_PhysicalMemory\"><Win32_PhysicalMemory><Capacity>1073741824</Capacity><Manufacturer>A&amp;B &lt;\"x\"&gt;</Manufacturer><Offset>-5</Offset><Speed>3200 MHz</Speed><InstallDate>19700101000000.000000+000</InstallDate></Win32_PhysicalMemory></Instance>"), "{t}");
        assert!(t.contains("<Instance Content=\"Delete\" Namespace=\"\\\\X\\root\\a&quot;b\" Class=\"SMS_Authority\" ParentClass=\"SMS_Authority\"><SMS_Authority></SMS_Authority></Instance></ReportBody></Report>"), "{t}");
        assert_eq!(ReportKind::HardwareInventory.endpoint(), "MP_HinvEndpoint");
        assert_eq!(ReportKind::Discovery.endpoint(), "MP_DdrEndpoint");
    }

    #[test]
    fn invalid_names_refuse_to_emit() {
        for bad in ["", "1abc", "a b", "a<b", "é"] {
            assert!(!is_xml_name(bad), "{bad}");
            let src = |w: &mut InstanceWriter<'_, '_>| {
                w.instance(InstanceContent::New, Namespace::Ccm, bad, |_| Ok(()))
            };
            assert_eq!(
                emitted_len(&Report::discovery(identity(), DATE, &src)),
                Err(Overflow)
            );
            let src = |w: &mut InstanceWriter<'_, '_>| {
                w.instance(InstanceContent::New, Namespace::Ccm, "Ok_1", |p| {
                    p.prop(bad, "v")
                })
            };
            assert_eq!(
                emitted_len(&Report::discovery(identity(), DATE, &src)),
                Err(Overflow)
            );
        }
        for good in ["A", "_x", "Win32_Foo", "a-b.c9"] {
            assert!(is_xml_name(good), "{good}");
        }
        let long = "h".repeat(400);
        let src = |w: &mut InstanceWriter<'_, '_>| {
            w.instance(InstanceContent::New, Namespace::Custom(&long), "C", |_| {
                Ok(())
            })
        };
        assert_eq!(
            emitted_len(&Report::discovery(identity(), DATE, &src)),
            Err(Overflow)
        );
    }

    #[test]
    fn static_instances_and_empty_body() {
        let items = [StaticInstance {
            content: InstanceContent::New,
            namespace: Namespace::Cimv2,
            class: "Win32_BIOS",
            properties: &[("Version", "1.2"), ("Version", "1.3")],
        }];
        let items = StaticInstances(&items);
        let r = Report::hardware_inventory(
            identity(),
            ReportType::Full,
            ReportVersion::default(),
            DATE,
            &items,
        );
        assert!(text(&r)
            .contains("<Win32_BIOS><Version>1.2</Version><Version>1.3</Version></Win32_BIOS>"));
        let r = Report::discovery(identity(), DATE, &NoInstances);
        assert!(text(&r).ends_with("</ReportHeader><ReportBody></ReportBody></Report>"));
    }

    /// A generated inventory of about `target` bytes of UTF-16LE, deterministic.
    pub(crate) struct BigInventory {
        pub items: u32,
    }

    impl InstanceSource for BigInventory {
        fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
            for i in 0..self.items {
                w.instance(
                    InstanceContent::New,
                    Namespace::Cimv2,
                    "Win32_Service",
                    |p| {
                        p.prop_fmt("Name", format_args!("svc{i:05}"))?;
                        p.prop("State", if i % 3 == 0 { "Running" } else { "Stopped" })?;
                        p.prop_u64("ProcessId", u64::from(i) * 7919 % 65_536)
                    },
                )?;
            }
            Ok(())
        }
    }

    #[test]
    fn a_64k_inventory_streams_through_a_512_byte_window() {
        let src = BigInventory { items: 190 };
        let r = Report::hardware_inventory(
            identity(),
            ReportType::Full,
            ReportVersion::default(),
            DATE,
            &src,
        );
        let total = emitted_len(&r).unwrap();
        assert!(total >= 64 * 1024, "{total}");
        let mut whole = vec![0u8; total];
        let mut s = SliceSink::new(&mut whole);
        r.emit(&mut s).unwrap();
        let mut joined: Vec<u8> = Vec::new();
        let mut window = [0u8; 512];
        while joined.len() < total {
            let mut w = WindowSink::new(&mut window, joined.len());
            r.emit(&mut w).unwrap();
            let n = w.filled();
            assert!(n > 0);
            joined.extend_from_slice(&window[..n]);
        }
        assert_eq!(joined, whole);
    }
}
