#!/usr/bin/env python3
"""Independent check of a captured mpagent message after registration (docs/protocol.md §1-§3, §5, §6).

Usage: verify_message.py REQUEST_FILE

REQUEST_FILE holds the whole HTTP request as sent (head + multipart body). Written from the spec
alone with Python's standard XML parser and `cryptography` (OpenSSL): it shares no code with the
Rust core. Checks the request framing, the well-formedness of header and body, <Body Length>, the
clientauth hook (ClientIDSignature over UTF-16LE("GUID:{SMSID upper}") + 00 00, PayloadSignature
over the octet-stream part exactly as sent, both verified with the key of the PublicKey
certificate; without a HashAlgorithm property, as RSA SHA-1) and the body's shape for its
endpoint. Framing and signature checks are mpwire.py's, shared with verify_registration.py.
Exits 0 when all holds, 1 with a reason.
"""
import re
import sys
import xml.etree.ElementTree as ET

from cryptography import x509

from mpwire import algorithm_name, fail, parse_request, verify

# HashAlgorithm comes last and is absent in the ConfigMgr 2007 (RSA SHA-1) form.
CLIENTAUTH_ORDER = ["AuthSenderMachine", "PublicKey", "ClientIDSignature", "PayloadSignature",
                    "ClientCapabilities", "HashAlgorithm"]
ENDPOINTS = {  # endpoint -> (ReplyMode, body root)
    "MP_DdrEndpoint": ("ASync", "Report"),
    "MP_HinvEndpoint": ("ASync", "Report"),
    "MP_RelayEndpoint": ("ASync", "Report"),
    "StatusReceiver": ("ASync", "Status"),
    "MP_PolicyManager": ("Sync", "RequestAssignments"),
}
GUID_RE = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
WMI_RE = r"\d{14}\.\d{6}\+\d{3}"


def check_report_header(root, source_id):
    machine = root.find("ReportHeader/Identification/Machine")
    if machine is None:
        fail("Report without ReportHeader/Identification/Machine")
    for tag in ("ClientInstalled", "ClientType", "ClientID", "ClientVersion", "NetBIOSName",
                "CodePage", "SystemDefaultLCID"):
        if machine.find(tag) is None:
            fail(f"Machine/{tag} missing")
    if (machine.findtext("ClientID") or "").upper() != source_id.upper():
        fail("Report ClientID is not the SourceID")
    details = root.find("ReportHeader/ReportDetails")
    if details is None:
        fail("ReportDetails missing")
    if details.findtext("ReportType") not in ("Full", "Delta"):
        fail("ReportType")
    if not re.fullmatch(WMI_RE, details.findtext("Date") or ""):
        fail(f"Report Date {details.findtext('Date')!r} is not the WMI form")


def check_body(endpoint, root, source_id, body_text):
    if endpoint in ("MP_DdrEndpoint", "MP_HinvEndpoint"):
        check_report_header(root, source_id)
        want = {"MP_DdrEndpoint": "{00000000-0000-0000-0000-000000000003}",
                "MP_HinvEndpoint": "{00000000-0000-0000-0000-000000000001}"}[endpoint]
        action = root.findtext("ReportHeader/InventoryAction/InventoryActionID")
        if action != want:
            fail(f"InventoryActionID {action!r} for {endpoint}")
        body = root.find("ReportBody")
        if body is None:
            fail("ReportBody missing")
        n = 0
        for inst in body:
            if inst.tag != "Instance":
                fail(f"ReportBody child {inst.tag}")
            if inst.get("Content") not in ("New", "Update", "Delete"):
                fail(f"Instance Content {inst.get('Content')!r}")
            cls = inst.get("Class")
            if not cls or inst.get("ParentClass") != cls or not inst.get("Namespace"):
                fail("Instance Class/ParentClass/Namespace")
            kids = list(inst)
            if len(kids) != 1 or kids[0].tag != cls:
                fail(f"Instance of {cls} must hold exactly one <{cls}>")
            n += 1
        return f"{n} instances"
    if endpoint == "MP_RelayEndpoint":
        if not body_text.startswith("<?xml "):
            fail("relay message without an XML declaration")
        check_report_header(root, source_id)
        sm = root.find("ReportBody/StateMessage")
        if sm is None or sm.find("Topic") is None or sm.find("State") is None:
            fail("StateMessage/Topic/State missing")
        for a in ("ID", "Type", "IDType"):
            if sm.find("Topic").get(a) is None:
                fail(f"Topic/@{a} missing")
        params = sm.findall("UserParameters/Param")
        return f"state message, topic {sm.find('Topic').get('ID')!r}, {len(params)} params"
    if endpoint == "StatusReceiver":
        if not root.findtext("Type"):
            fail("Status/Type missing")
        props = {p.get("Name"): p.get("Value") for p in root.findall("Properties/Property")}
        if (props.get("ClientID") or "").upper() != source_id.upper():
            fail("Status ClientID property is not the SourceID")
        if root.find("Qualifiers") is None:
            fail("Status/Qualifiers missing")
        return f"status {root.findtext('Type')}, {len(props)} properties"
    if endpoint == "MP_PolicyManager":
        if root.get("SchemaVersion") != "1.00" or root.get("RequestType") != "Always":
            fail("RequestAssignments attributes")
        if (root.findtext("Identification/Machine/ClientID") or "").upper() != source_id.upper():
            fail("RequestAssignments ClientID is not the SourceID")
        if not (root.findtext("PolicySource") or "").startswith("SMS:"):
            fail("PolicySource")
        if root.find("Resource").get("ResourceType") != "Machine":
            fail("Resource")
        return "policy request"
    fail(f"unknown endpoint {endpoint}")


def main(path):
    header, octets = parse_request(open(path, "rb").read())
    endpoint = header.findtext("TargetEndpoint")
    if endpoint not in ENDPOINTS:
        fail(f"TargetEndpoint {endpoint!r}")
    reply_mode, root_tag = ENDPOINTS[endpoint]
    if header.findtext("ReplyMode") != reply_mode:
        fail(f"ReplyMode {header.findtext('ReplyMode')!r} for {endpoint}")
    if header.findtext("TargetAddress") != f"mp:{endpoint}":
        fail("TargetAddress")
    source_id = header.findtext("SourceID") or ""
    if not re.fullmatch(r"GUID:" + GUID_RE, source_id):
        fail(f"SourceID {source_id!r}")
    length = int(header.find("Body").get("Length"))

    hooks = header.findall("Hooks/Hook2")
    auth = [h for h in hooks if h.get("Name") == "clientauth"]
    if len(auth) != 1:
        fail("exactly one clientauth hook expected")
    props = [(p.get("Name"), p.text or "") for p in auth[0].findall("Property")]
    names = [n for n, _ in props]
    fixed = CLIENTAUTH_ORDER if "HashAlgorithm" in names else CLIENTAUTH_ORDER[:-1]
    if names[:len(fixed)] != fixed:
        fail(f"clientauth properties {names}")
    extra = names[len(fixed):]
    if extra not in ([], ["ProxySMSID"]):
        fail(f"unexpected clientauth properties {extra}")
    p = dict(props)
    if p["AuthSenderMachine"] != header.findtext("SourceHost"):
        fail("AuthSenderMachine is not the SourceHost")
    if p["ClientCapabilities"] != "NonSSL":
        fail("ClientCapabilities")
    for k in ("PublicKey", "ClientIDSignature", "PayloadSignature"):
        if not re.fullmatch(r"[0-9A-F]+", p[k]):
            fail(f"{k} is not upper-case hex")
    cert = x509.load_der_x509_certificate(bytes.fromhex(p["PublicKey"]))
    key = cert.public_key()
    alg = p.get("HashAlgorithm")
    verify(key, alg, bytes.fromhex(p["ClientIDSignature"]),
           ("GUID:" + source_id[5:].upper()).encode("utf-16-le") + b"\x00\x00", "ClientIDSignature")
    verify(key, alg, bytes.fromhex(p["PayloadSignature"]), octets, "PayloadSignature")
    proxy = ""
    if "ProxySMSID" in p:
        if not re.fullmatch(r"GUID:" + GUID_RE, p["ProxySMSID"]):
            fail("ProxySMSID")
        proxy = f", for proxy {p['ProxySMSID']}"

    a = header.find("Attachment")
    if a is not None:
        # The header-only body must parse and carry an empty ReportBody; the attachment is the
        # full report checked below.
        head_only = ET.fromstring(octets[:length - 2])
        if head_only.find("ReportBody") is None or len(head_only.find("ReportBody")):
            fail("the body of a report with an attachment must be header-only")
        offset, alen = int(a.get("Offset")), int(a.get("Length"))
        body_xml = octets[offset + 2:offset + alen]
    else:
        body_xml = octets[:-4]
    text = body_xml.decode("utf-16-le")
    root = ET.fromstring(body_xml)  # a real XML parser over the UTF-16LE bytes: must be well formed
    if root.tag != root_tag:
        fail(f"body root {root.tag} for {endpoint}")
    what = check_body(endpoint, root, source_id, text)
    print(f"OK: {endpoint} ({what}, body {length} bytes): {algorithm_name(alg)} ClientIDSignature and "
          f"PayloadSignature verify{proxy}")


if __name__ == "__main__":
    main(sys.argv[1])
