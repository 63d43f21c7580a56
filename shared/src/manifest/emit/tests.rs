use super::super::yaml::parse_document;
use super::*;
use serde_json::json;

/// Parses `text` the way manifests are read and returns the JSON (null for an empty document).
fn read_back(text: &str) -> Value {
    match parse_document(text) {
        Ok(Some(p)) => p.value,
        Ok(None) => Value::Null,
        Err(e) => panic!("emitted YAML does not parse: {e:?}\n{text}"),
    }
}

fn assert_round_trip(v: &Value) {
    let text = to_yaml(v);
    assert!(text.ends_with('\n'), "no final newline: {text:?}");
    assert_eq!(&read_back(&text), v, "round trip changed the value; YAML was:\n{text}");
}

#[test]
fn kubectl_layout() {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "labels": {"app": "web", "tier": "front"},
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "annotations": {}
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.25",
                "args": ["--port=80", "-v"],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": []
            }],
            "nodeSelector": {"zone": "north"},
            "matrix": [[1, 2], [], [{"a": 1}]]
        },
        "status": {"phase": "Running", "ready": true, "ratio": 0.5, "nothing": null}
    });
    let expected = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
    tier: front
  creationTimestamp: \"2024-05-01T10:00:00Z\"
  annotations: {}
spec:
  containers:
  - name: web
    image: nginx:1.25
    args:
    - --port=80
    - -v
    ports:
    - containerPort: 80
      protocol: TCP
    env: []
  nodeSelector:
    zone: north
  matrix:
  - - 1
    - 2
  - []
  - - a: 1
status:
  phase: Running
  ready: true
  ratio: 0.5
  nothing: null
";
    assert_eq!(to_yaml(&pod), expected);
    assert_round_trip(&pod);
}

#[test]
fn top_level_scalars_and_empty_collections() {
    for (v, text) in [
        (json!(null), "null\n"),
        (json!(true), "true\n"),
        (json!(42), "42\n"),
        (json!(-1.5), "-1.5\n"),
        (json!("hello"), "hello\n"),
        (json!("yes"), "\"yes\"\n"),
        (json!({}), "{}\n"),
        (json!([]), "[]\n"),
        (json!(["a", {"b": []}]), "- a\n- b: []\n"),
    ] {
        assert_eq!(to_yaml(&v), text, "{v}");
    }
    assert!(parse_document("null\n").unwrap().is_none());
    assert_round_trip(&json!(["a", {"b": []}]));
    assert_round_trip(&json!({}));
    assert_round_trip(&json!([]));
    assert_round_trip(&json!("top\nlevel\n"));
}

#[test]
fn quoting_table() {
    for (s, text) in [
        ("yes", "\"yes\""),
        ("No", "\"No\""),
        ("on", "\"on\""),
        ("OFF", "\"OFF\""),
        ("y", "\"y\""),
        ("n", "\"n\""),
        ("true", "\"true\""),
        ("null", "\"null\""),
        ("~", "\"~\""),
        ("", "\"\""),
        ("0644", "\"0644\""),
        ("08", "\"08\""),
        ("1e3", "\"1e3\""),
        ("12", "\"12\""),
        ("-12", "\"-12\""),
        ("+12", "\"+12\""),
        ("1_000", "\"1_000\""),
        ("0x1F", "\"0x1F\""),
        ("0b101", "\"0b101\""),
        ("0o17", "\"0o17\""),
        ("3.14", "\"3.14\""),
        (".5", "\".5\""),
        ("1.", "\"1.\""),
        (".inf", "\".inf\""),
        ("-.Inf", "\"-.Inf\""),
        (".NaN", "\".NaN\""),
        ("190:20:30", "\"190:20:30\""),
        ("2024-01-31", "\"2024-01-31\""),
        ("2024-05-01T10:00:00Z", "\"2024-05-01T10:00:00Z\""),
        ("<<", "\"<<\""),
        (" leading", "' leading'"),
        ("trailing ", "'trailing '"),
        ("- item", "'- item'"),
        ("-", "'-'"),
        ("? what", "'? what'"),
        (":colon", "':colon'"),
        (",comma", "',comma'"),
        ("[x]", "'[x]'"),
        ("]", "']'"),
        ("{x}", "'{x}'"),
        ("}", "'}'"),
        ("#hash", "'#hash'"),
        ("&anchor", "'&anchor'"),
        ("*alias", "'*alias'"),
        ("!tag", "'!tag'"),
        ("|pipe", "'|pipe'"),
        (">fold", "'>fold'"),
        ("'quote", "'''quote'"),
        ("\"dq", "'\"dq'"),
        ("%percent", "'%percent'"),
        ("@at", "'@at'"),
        ("`tick", "'`tick'"),
        ("a: b", "'a: b'"),
        ("a #b", "'a #b'"),
        ("ends:", "'ends:'"),
        ("---", "'---'"),
        ("...", "'...'"),
        ("tab\there", "\"tab\\there\""),
        ("bell\u{7}", "\"bell\\x07\""),
        ("nel\u{85}", "\"nel\\x85\""),
        ("ls\u{2028}", "\"ls\\u2028\""),
        ("bom\u{feff}", "\"bom\\uFEFF\""),
        ("cr\rlf", "\"cr\\rlf\""),
        ("nul\0", "\"nul\\0\""),
        ("back\\slash", "back\\slash"),
        ("nbsp\u{a0}x", "'nbsp\u{a0}x'"),
        // Plain: nothing here is special.
        ("--port=80", "--port=80"),
        ("-v", "-v"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("a:b", "a:b"),
        ("a#b", "a#b"),
        ("a, b", "a, b"),
        ("a[0]", "a[0]"),
        ("1.2.3", "1.2.3"),
        ("v1", "v1"),
        ("nginx:1.25", "nginx:1.25"),
        ("500m", "500m"),
        ("1Gi", "1Gi"),
        ("yesterday", "yesterday"),
        ("ünïcødé 日本", "ünïcødé 日本"),
    ] {
        let v = json!({ "k": s });
        assert_eq!(to_yaml(&v), format!("k: {text}\n"), "{s:?}");
        assert_round_trip(&v);
    }
}

#[test]
fn keys_are_quoted_too() {
    let v = json!({"yes": 1, "": 2, "0644": 3, "a: b": 4, "<<": 5, "- x": 6, "multi\nline": 7, "plain": 8});
    assert_eq!(
        to_yaml(&v),
        "\"yes\": 1\n\"\": 2\n\"0644\": 3\n'a: b': 4\n\"<<\": 5\n'- x': 6\n\"multi\\nline\": 7\nplain: 8\n"
    );
    assert_round_trip(&v);
    let long = "k".repeat(2000);
    let v = json!({ long.clone(): "v", "list": [{ long: 1, "b": 2 }] });
    assert_round_trip(&v);
}

#[test]
fn multi_line_strings_are_literal_blocks() {
    let v = json!({
        "keep": "line one\nline two\n",
        "strip": "line one\nline two",
        "many": "a\n\n\n",
        "inner": "a\n\n  indented\n\tb\nlast",
        "list": ["x\ny\n", {"script": "#!/bin/sh\necho hi\n"}]
    });
    let expected = "\
keep: |
  line one
  line two
strip: |-
  line one
  line two
many: |+
  a


inner: \"a\\n\\n  indented\\n\\tb\\nlast\"
list:
- |
  x
  y
- script: |
    #!/bin/sh
    echo hi
";
    assert_eq!(to_yaml(&v), expected);
    assert_round_trip(&v);
    // Strings a literal block cannot carry exactly are double-quoted instead.
    for s in [
        "\nstarts with a newline",
        " indented\nfirst",
        "\n",
        "\n\n",
        "trailing space \nx",
        "x\ny ",
        "a\r\nb",
        "a\n   \nb\n",
        "a\n\tb",
    ] {
        let v = json!({ "k": s });
        let text = to_yaml(&v);
        assert!(text.starts_with("k: \""), "{s:?}: {text}");
        assert_round_trip(&v);
    }
    // Interior lines may be indented or blank.
    for s in ["a\n  b\n", "a\n\nb", "a\n  x\n\nb\n", "a\n b\tc\nd", "a: b\n- c\n# d\n"] {
        let v = json!({ "k": s, "l": [s] });
        assert!(to_yaml(&v).contains('|'), "{s:?}");
        assert_round_trip(&v);
    }
}

#[test]
fn numbers_print_as_json_does() {
    let v = json!({
        "int": 7,
        "neg": -9_223_372_036_854_775_808_i64,
        "big": u64::MAX,
        "float": 1.0,
        "tiny": 1e-7,
        "huge": 1.2345678901234568e22,
        "zero": -0.0
    });
    let text = to_yaml(&v);
    assert!(text.contains("int: 7\n") && text.contains("float: 1.0\n"), "{text}");
    assert!(text.contains(&format!("big: {}\n", u64::MAX)), "{text}");
    assert_round_trip(&v);
}

/// Strings chosen to break a naive emitter.
const TRICKY: &[&str] = &[
    "",
    " ",
    "yes",
    "No",
    "ON",
    "y",
    "~",
    "null",
    "0644",
    "0x1F",
    "1e3",
    "12",
    "-1",
    ".inf",
    "1:20",
    "2024-01-01",
    "- a",
    "-a",
    "a: b",
    "a #b",
    "#",
    "'",
    "\"",
    "\\",
    "&a",
    "*a",
    "!a",
    "|",
    ">",
    "%",
    "@",
    "`",
    "[",
    "]",
    "{",
    "}",
    ",",
    "?",
    ":",
    "a:",
    "<<",
    "---",
    "...",
    "line\nbreak",
    "trail\n",
    "two\n\n",
    "\n",
    "tab\t",
    "\ttab",
    "ü",
    "\u{85}",
    "\u{2028}",
    "\u{feff}x",
    "\u{1}",
    "a\r\nb",
    " x",
    "x ",
    "key=value",
    "a, b",
    "C:\\path",
    "{{ template }}",
    "$(VAR)",
];

/// A small deterministic generator (xorshift) of nested values built from `TRICKY`.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn string(&mut self) -> String {
        let mut s = String::new();
        for _ in 0..=self.below(3) {
            s.push_str(TRICKY[self.below(TRICKY.len())]);
        }
        s
    }

    fn value(&mut self, depth: usize) -> Value {
        let pick = if depth >= 4 { self.below(6) } else { self.below(9) };
        match pick {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => json!(self.next() as i64 >> self.below(64)),
            3 => json!((self.next() % 100_000) as f64 / 7.0),
            4 | 5 => Value::String(self.string()),
            6 | 7 => {
                let mut m = Map::new();
                for _ in 0..self.below(4) {
                    m.insert(self.string(), self.value(depth + 1));
                }
                Value::Object(m)
            }
            _ => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
        }
    }
}

#[test]
fn every_tricky_string_round_trips_as_value_and_key() {
    for s in TRICKY {
        assert_round_trip(&json!(s));
        assert_round_trip(&json!({ *s: s }));
        assert_round_trip(&json!([s, [s], { *s: [s] }]));
    }
}

#[test]
fn generated_values_round_trip() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let v = g.value(0);
        assert_round_trip(&v);
    }
}
