//! The bounded XML tokenizer: never panics, always terminates, keeps its bounds, and the lazy
//! attribute iterator and unescaping agree with what the reader validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpagent_core::wire::xml_reader::{Event, Reader, XmlText, MAX_ATTRS, MAX_DEPTH};

fn exercise(t: XmlText<'_>) {
    let mut buf = [0u8; 256];
    let n = t.chars().count();
    if let Ok(s) = t.unescape_into(&mut buf) {
        assert_eq!(s.chars().count(), n);
        assert!(t.eq_str(s));
    }
    if let Some(p) = t.as_plain() {
        assert!(t.chars().eq(p.chars()));
    }
    let _ = t.is_whitespace();
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(src) = core::str::from_utf8(rest) else {
        return;
    };
    let mut r = Reader::new(src);
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(steps <= src.len() + 2, "no progress");
        let ev = match r.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                assert_eq!(r.depth(), 0);
                break;
            }
            Err(e) => {
                assert!(e.offset <= src.len());
                assert_eq!(r.next_event(), Err(e));
                break;
            }
        };
        assert!(r.depth() <= MAX_DEPTH);
        match ev {
            Event::StartTag { name, attrs } | Event::EmptyTag { name, attrs } => {
                assert!(!name.is_empty());
                let mut count = 0;
                for a in attrs {
                    assert!(!a.name.is_empty());
                    assert_eq!(attrs.get(a.name).map(|v| v.raw()), Some(a.value.raw()));
                    exercise(a.value);
                    count += 1;
                }
                assert!(count <= MAX_ATTRS);
                if matches!(ev, Event::StartTag { .. }) {
                    match mode % 4 {
                        1 => {
                            if r.skip_element().is_err() {
                                break;
                            }
                        }
                        2 => match r.read_text() {
                            Ok(t) => exercise(t),
                            Err(_) => break,
                        },
                        _ => {}
                    }
                }
            }
            Event::EndTag { name } => assert!(!name.is_empty()),
            Event::Text(t) | Event::CData(t) => exercise(t),
        }
    }
});
