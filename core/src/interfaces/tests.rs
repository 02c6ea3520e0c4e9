use std::path::{Path, PathBuf};

use super::*;

fn wf(text: &str) -> Result<Loaded, LoadError> {
    parse_text(Path::new("dir/ORDER-1.0.qwf.yaml"), text)
}

fn workflow(loaded: &Loaded) -> &WorkflowDef {
    match loaded.definitions.as_slice() {
        [Definition::Workflow(w)] => w,
        other => panic!("expected one workflow, got {other:?}"),
    }
}

/// Each step as "Name" with its predecessors' names, for comparing graphs.
fn deps(w: &WorkflowDef) -> Vec<(String, Vec<String>)> {
    w.dependencies()
        .into_iter()
        .map(|(s, preds)| {
            (
                s.name.clone(),
                preds.into_iter().map(|p| p.name.clone()).collect(),
            )
        })
        .collect()
}

fn d(name: &str, preds: &[&str]) -> (String, Vec<String>) {
    (
        name.to_string(),
        preds.iter().map(|p| p.to_string()).collect(),
    )
}

/// The single error's line and message.
fn one_error(result: Result<Loaded, LoadError>) -> (usize, String) {
    let err = result.expect_err("expected an error");
    let errors: Vec<_> = err
        .diagnostics
        .iter()
        .filter(|d| !d.message.starts_with(WARNING_PREFIX))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error, got: {err}");
    (errors[0].origin.line, errors[0].message.clone())
}

#[test]
fn three_step_workflow_with_parallel_branch() {
    let text = "\
# an order
type: workflow
name: ORDER
version: 1.0
desc: takes an order
author: someone
steps:
  - Validate:1.0
  - - Reserve:1.0
    - Bill:2.1
  - Ship:1.0
keylist: [order_id, customer]
autostart: true
max_instances: 3
errors: order-errors
groups: [shop]
options:
  flag: true
  count: 3
  ratio: 1.5
  label: '12'
  nested: {a: [1, x]}
";
    let loaded = wf(text).expect("valid workflow");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let w = workflow(&loaded);
    assert_eq!(w.name, "ORDER");
    // Written as the number 1.0, kept as written.
    assert_eq!(w.version, "1.0");
    assert_eq!(w.origin.line, 2);
    assert_eq!(w.desc.as_deref(), Some("takes an order"));
    assert_eq!(w.keylist, ["order_id", "customer"]);
    assert_eq!(w.autostart, 1);
    assert_eq!(w.max_instances, 3);
    let (errors, origin) = w.errors.clone().expect("errors");
    assert_eq!((errors.as_str(), origin.line), ("order-errors", 15));
    assert_eq!(w.groups, ["shop"]);
    assert_eq!(
        serde_json::Value::Object(w.options.clone()),
        serde_json::json!({"flag": true, "count": 3, "ratio": 1.5, "label": "12",
                           "nested": {"a": [1, "x"]}})
    );
    let refs: Vec<_> = w
        .step_refs()
        .iter()
        .map(|s| format!("{}:{}@{}", s.name, s.version, s.origin.line))
        .collect();
    assert_eq!(
        refs,
        [
            "Validate:1.0@8",
            "Reserve:1.0@9",
            "Bill:2.1@10",
            "Ship:1.0@11"
        ]
    );
    assert_eq!(
        deps(w),
        [
            d("Validate", &[]),
            d("Reserve", &["Validate"]),
            d("Bill", &["Validate"]),
            d("Ship", &["Reserve", "Bill"]),
        ]
    );
}

#[test]
fn defaults_of_a_minimal_workflow() {
    let loaded = wf("type: workflow\nname: W\nversion: '2'\nsteps: [A:1]\n").expect("valid");
    let w = workflow(&loaded);
    assert_eq!((w.autostart, w.max_instances), (0, 1));
    assert!(w.keylist.is_empty() && w.groups.is_empty() && w.options.is_empty());
    assert_eq!(w.errors, None);
    assert_eq!(deps(w), [d("A", &[])]);
}

#[test]
fn the_documented_grammar_example() {
    let text = "type: workflow\nname: W\nversion: 1.0\n\
                steps: [\"A:1.0\", [\"B:1.0\", [\"C:1.0\", \"D:1.0\"]], \"E:1.0\"]\n";
    let loaded = wf(text).expect("valid");
    let w = workflow(&loaded);
    let step = |n: &str| {
        StepNode::Step(StepRef {
            name: n.into(),
            version: "1.0".into(),
            origin: Origin {
                file: PathBuf::from("dir/ORDER-1.0.qwf.yaml"),
                line: 4,
            },
        })
    };
    assert_eq!(
        w.steps,
        [
            step("A"),
            StepNode::Parallel(vec![vec![step("B")], vec![step("C"), step("D")]]),
            step("E"),
        ]
    );
    assert_eq!(
        deps(w),
        [
            d("A", &[]),
            d("B", &["A"]),
            d("C", &["A"]),
            d("D", &["C"]),
            d("E", &["B", "D"]),
        ]
    );
}

#[test]
fn nested_parallel_inside_a_branch() {
    // A branch's series may itself fork: [A, [[B, [C, D]], E], F].
    let text = "type: workflow\nname: W\nversion: 1\n\
                steps: [A:1, [[B:1, [C:1, D:1]], E:1], F:1]\n";
    let loaded = wf(text).expect("valid");
    assert_eq!(
        deps(workflow(&loaded)),
        [
            d("A", &[]),
            d("B", &["A"]),
            d("C", &["B"]),
            d("D", &["B"]),
            d("E", &["A"]),
            d("F", &["C", "D", "E"]),
        ]
    );
}

#[test]
fn step_file_reads_and_hashes_its_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("validate.py"), "class Validate: pass\n").expect("write");
    let path = dir.path().join("Validate-1.0.qstep.yaml");
    let text = "type: step\nname: Validate\nversion: 1.0\ndesc: checks\nlang: python\n\
                base-class-name: QorusNormalStep\nclass-name: Validate\ncode: validate.py\n";
    let loaded = parse_text(&path, text).expect("valid step");
    let [Definition::Step(s)] = loaded.definitions.as_slice() else {
        panic!("expected one step: {loaded:?}");
    };
    assert_eq!(
        (s.name.as_str(), s.version.as_str(), s.class_name.as_str()),
        ("Validate", "1.0", "Validate")
    );
    assert_eq!((s.lang.as_str(), s.steptype.as_str()), ("python", "NORMAL"));
    assert_eq!(s.base_class_name, "QorusNormalStep");
    assert_eq!(s.code.path, dir.path().join("validate.py"));
    assert_eq!(s.code.source, "class Validate: pass\n");
    // sha256("class Validate: pass\n"), computed independently with sha256sum.
    assert_eq!(
        s.code.hash,
        "0666eb18fcb93d7b105fd79c6d914ec039b4791581b18d17d47c7592b11256bf"
    );
}

#[test]
fn errors_definition_defaults_and_every_enum() {
    let text = "\
type: errors
name: order-errors
desc: what can go wrong
errors:
  - name: PLAIN
  - name: F
    desc: fatal
    severity: fatal
    status: RETRY
    business: true
    retry-delay: 30
    level: global
  - {name: MJ, severity: MAJOR, status: error, level: WORKFLOW}
  - {name: MN, severity: Minor, level: auto}
  - {name: W, severity: WARNING}
  - {name: I, severity: info, business: false, retry-delay: 0}
  - {name: N, severity: NONE}
";
    let loaded = parse_text(Path::new("order.qerrors.yaml"), text).expect("valid errors");
    let [Definition::Errors(e)] = loaded.definitions.as_slice() else {
        panic!("expected one errors definition: {loaded:?}");
    };
    assert_eq!(e.name, "order-errors");
    let summary: Vec<_> = e
        .errors
        .iter()
        .map(|x| {
            format!(
                "{} {} {} {} {:?} {} @{}",
                x.name,
                x.severity,
                x.status,
                x.business,
                x.retry_delay_secs,
                x.level,
                x.origin.line
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "PLAIN MAJOR E false None AUTO @5",
            "F FATAL R true Some(30) GLOBAL @6",
            "MJ MAJOR E false None WORKFLOW @13",
            "MN MINOR E false None AUTO @14",
            "W WARNING E false None AUTO @15",
            "I INFO E false Some(0) AUTO @16",
            "N NONE E false None AUTO @17",
        ]
    );
    assert_eq!(e.errors[1].desc.as_deref(), Some("fatal"));
}

#[test]
fn errors_definition_rejects_bad_values_and_duplicates() {
    let text = "type: errors\nname: e\nerrors:\n\
                - {name: A, severity: BAD}\n\
                - {name: B, status: MAYBE}\n\
                - {name: C, level: TOP, retry-delay: -1}\n\
                - {name: D, business: 'yes'}\n\
                - {name: E}\n\
                - {name: E}\n";
    let err = parse_text(Path::new("e.qerrors.yaml"), text).expect_err("invalid");
    let lines: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (d.origin.line, d.message.as_str()))
        .collect();
    assert_eq!(lines.len(), 6, "{err}");
    assert!(lines[0].0 == 4 && lines[0].1.contains("severity"), "{err}");
    assert!(lines[1].0 == 5 && lines[1].1.contains("status"), "{err}");
    assert!(lines.iter().any(|l| l.0 == 6 && l.1.contains("level")));
    assert!(lines
        .iter()
        .any(|l| l.0 == 6 && l.1.contains("retry-delay") && l.1.contains("minimum is 0")));
    assert!(lines[4].0 == 7 && lines[4].1.contains("business"), "{err}");
    assert_eq!(
        lines[5],
        (9, "error 'E' is defined more than once (first at line 8)")
    );
}

#[test]
fn bad_yaml_syntax_names_its_line() {
    let text = "type: workflow\nname: W\nversion: 1.0\nsteps: [A:1.0\nkeylist: [a]\n";
    let (line, message) = one_error(wf(text));
    assert!(message.starts_with("YAML syntax error"), "{message}");
    // The unclosed flow list is detected where the next key starts.
    assert_eq!(line, 5, "{message}");

    let (line, message) = one_error(wf("type: workflow\nname: W\n  bad: indent\n"));
    assert!(message.starts_with("YAML syntax error"), "{message}");
    assert_eq!(line, 3, "{message}");
}

#[test]
fn duplicate_yaml_key_is_an_error() {
    let text = "type: workflow\nname: W\nversion: 1\nsteps: [A:1]\nsteps: [B:1]\n";
    assert_eq!(
        one_error(wf(text)),
        (5, "duplicate key 'steps' (first at line 4)".to_string())
    );
}

#[test]
fn missing_required_key_names_the_mapping_line() {
    let text = "\n# comment\ntype: workflow\nname: W\nsteps: [A:1]\n";
    assert_eq!(
        one_error(wf(text)),
        (3, "workflow is missing required key 'version'".to_string())
    );
    // Present without a value: the key's line.
    let text = "type: workflow\nname: W\nversion:\nsteps: [A:1]\n";
    assert_eq!(
        one_error(wf(text)),
        (3, "key 'version' is required but has no value".to_string())
    );
    // In a nested mapping, the nested mapping's line.
    let text = "type: errors\nname: e\nerrors:\n  - name: A\n  - desc: no name\n";
    assert_eq!(
        one_error(parse_text(Path::new("e.qerrors.yaml"), text)),
        (
            5,
            "error definition is missing required key 'name'".to_string()
        )
    );
}

#[test]
fn wrong_type_names_the_key_line() {
    let text = "type: workflow\nname:\n  - W\nversion: 1\nsteps: [A:1]\n";
    assert_eq!(
        one_error(wf(text)),
        (2, "key 'name': expected a string, found a list".to_string())
    );
    let text = "type: workflow\nname: W\nversion: 1\nsteps: [A:1]\nmax_instances: 0\n";
    assert_eq!(
        one_error(wf(text)),
        (
            5,
            "key 'max_instances': 0 is too small (the minimum is 1)".to_string()
        )
    );
    let text = "type: workflow\nname: W\nversion: 1\nsteps: A:1\nautostart: '1'\n";
    let err = wf(text).expect_err("invalid");
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (d.origin.line, d.message.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                4,
                "key 'steps': expected a list of steps, found 'A:1'".to_string()
            ),
            (
                5,
                "key 'autostart': expected an integer, found '1'".to_string()
            ),
        ]
    );
}

#[test]
fn bad_step_references() {
    let text = "type: workflow\nname: W\nversion: 1\nsteps:\n  - A\n  - :1\n  - 'B:'\n  - C:1\n  - []\n  - D: 1.0\n";
    let err = wf(text).expect_err("invalid");
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (d.origin.line, d.message.as_str()))
        .collect();
    assert_eq!(got.len(), 5, "{err}");
    assert_eq!(
        got[0],
        (5, "step 'A': expected 'StepName:version' (no ':' found)")
    );
    assert_eq!(
        got[1],
        (
            6,
            "step ':1': expected 'StepName:version'; the name is empty"
        )
    );
    assert_eq!(
        got[2],
        (
            7,
            "step 'B:': expected 'StepName:version'; the version is empty"
        )
    );
    assert_eq!(got[3].0, 9);
    assert!(got[3].1.contains("empty list"), "{err}");
    // The easy slip of a space after the colon makes YAML read a mapping.
    assert_eq!(
        got[4],
        (
            10,
            "step 'D: 1.0' is read by YAML as a mapping; write it 'D:1.0', without a space"
        )
    );
}

#[test]
fn duplicate_step_in_a_workflow() {
    let text = "type: workflow\nname: W\nversion: 1\nsteps:\n  - A:1\n  - [B:1, [C:1, A:2]]\n";
    assert_eq!(
        one_error(wf(text)),
        (
            6,
            "step 'A' appears more than once in the workflow (first at line 5)".to_string()
        )
    );
}

#[test]
fn unknown_key_warns_with_its_line_and_still_loads() {
    let text = "type: workflow\nname: W\nversion: 1\nsteps: [A:1]\nsla_threshold: 30\n";
    let loaded = wf(text).expect("loads despite the unknown key");
    assert_eq!(workflow(&loaded).name, "W");
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].origin.line, 5);
    assert_eq!(
        loaded.warnings[0].to_string(),
        "dir/ORDER-1.0.qwf.yaml:5: unknown key 'sla_threshold' ignored \
         (not supported by Sluice yet)"
    );
}

#[test]
fn type_must_match_the_file_suffix() {
    let text = "type: step\nname: W\nversion: 1\nsteps: [A:1]\n";
    assert_eq!(
        one_error(wf(text)),
        (
            1,
            "'type: step' does not match the file name: a .qwf.yaml file has 'type: workflow'"
                .to_string()
        )
    );
    let (line, message) = one_error(wf("name: W\nversion: 1\nsteps: [A:1]\n"));
    assert_eq!(line, 1);
    assert!(message.contains("missing required key 'type'"), "{message}");

    let (line, message) = one_error(parse_text(
        Path::new("svc-1.0.qclass.yaml"),
        "type: class\n",
    ));
    assert_eq!(
        (line, message.as_str()),
        (
            1,
            "unsupported file type; expected .qwf.yaml, .qstep.yaml, .qerrors.yaml, \
             .qsd.yaml or .qjob.yaml"
        )
    );
    let (line, message) = one_error(parse_text(Path::new("J-1.qjob.yaml"), "type: service\n"));
    assert_eq!(line, 1);
    assert!(
        message.contains("a .qjob.yaml file has 'type: job'"),
        "{message}"
    );
}

fn step_text(extra: &str) -> String {
    format!(
        "type: step\nname: S\nversion: 1\nlang: python\nbase-class-name: QorusNormalStep\n\
         class-name: S\ncode: s.py\n{extra}"
    )
}

#[test]
fn unsupported_lang_steptype_and_base_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("s.py"), "").expect("write");
    let path = dir.path().join("S-1.qstep.yaml");

    let text = step_text("").replace("lang: python", "lang: java");
    let (line, message) = one_error(parse_text(&path, &text));
    assert_eq!(line, 4);
    assert!(
        message.contains("'java'") && message.contains("only 'python'"),
        "{message}"
    );

    let text = step_text("").replace("QorusNormalStep", "QorusAsyncStep");
    let (line, message) = one_error(parse_text(&path, &text));
    assert_eq!(line, 5);
    assert!(
        message.contains("'QorusAsyncStep' is not supported yet")
            && message.contains("only QorusNormalStep"),
        "{message}"
    );

    for steptype in ["ASYNC", "event", "SUBWORKFLOW"] {
        let (line, message) = one_error(parse_text(
            &path,
            &step_text(&format!("steptype: {steptype}\n")),
        ));
        assert_eq!(line, 8);
        assert!(
            message.contains("not supported yet") && message.contains("later"),
            "{message}"
        );
    }
    let (_, message) = one_error(parse_text(&path, &step_text("steptype: ARRAY\n")));
    assert!(message.contains("unknown steptype 'ARRAY'"), "{message}");

    let loaded = parse_text(&path, &step_text("steptype: NORMAL\n")).expect("NORMAL is fine");
    assert_eq!(loaded.definitions.len(), 1);
}

#[test]
fn missing_code_file_names_the_code_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("S-1.qstep.yaml");
    let (line, message) = one_error(parse_text(&path, &step_text("")));
    assert_eq!(line, 7);
    assert!(
        message.starts_with("key 'code': cannot read code file 's.py'"),
        "{message}"
    );
}

#[test]
fn several_bad_files_report_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let paths = vec![
        write(
            "A-1.qwf.yaml",
            "type: workflow\nname: A\nversion: 1\nsteps: [X]\n",
        ),
        write(
            "good.qerrors.yaml",
            "type: errors\nname: g\nerrors: []\nfoo: 1\n",
        ),
        write("B-1.qstep.yaml", "type: step\nname: B\nversion: [1]\n"),
        write("notes.txt", "hello"),
        dir.path().join("missing.qwf.yaml"),
    ];
    let err = parse_files(&paths).expect_err("invalid set");
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| {
            let file = d
                .origin
                .file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            (file, d.origin.line)
        })
        .collect();
    let expect = |f: &str, l: usize| (f.to_string(), l);
    assert_eq!(
        got,
        [
            expect("A-1.qwf.yaml", 4),
            // The warning of a good file rides along, marked as one.
            expect("good.qerrors.yaml", 4),
            // Missing lang, base-class-name, class-name and code, at the mapping.
            expect("B-1.qstep.yaml", 1),
            expect("B-1.qstep.yaml", 1),
            expect("B-1.qstep.yaml", 1),
            expect("B-1.qstep.yaml", 1),
            expect("B-1.qstep.yaml", 3),
            expect("notes.txt", 1),
            expect("missing.qwf.yaml", 1),
        ],
        "{err}"
    );
    assert_eq!(
        err.diagnostics[1].message,
        "warning: unknown key 'foo' ignored (not supported by Sluice yet)"
    );
    assert!(err.diagnostics[8].message.starts_with("cannot read file"));
    // The Display form is one `file:line: message` per line.
    assert_eq!(err.to_string().lines().count(), 9);
}

#[test]
fn duplicate_definitions_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let w1 = "type: workflow\nname: W\nversion: 1\nsteps: [A:1]\n";
    let w2 = "type: workflow\nname: W\nversion: 2\nsteps: [A:1]\n";
    let errs = "type: errors\nname: e\nerrors: []\n";
    let first = write("W-1.qwf.yaml", w1);
    let paths = vec![
        first.clone(),
        write("W-2.qwf.yaml", w2),
        write("again.qwf.yaml", &format!("# copy\n{w1}")),
        write("e.qerrors.yaml", errs),
        write("e2.qerrors.yaml", errs),
    ];
    let err = parse_files(&paths).expect_err("duplicates");
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (d.origin.line, d.message.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                2,
                format!(
                    "duplicate definition: workflow 'W' version '1' is also defined at {}:1",
                    first.display()
                )
            ),
            (
                1,
                format!(
                    "duplicate definition: errors 'e' is also defined at {}:1",
                    paths[3].display()
                )
            ),
        ]
    );
    // Different versions of one workflow are not duplicates.
    let loaded = parse_files(&paths[..2]).expect("two versions");
    assert_eq!(loaded.definitions.len(), 2);
}

#[test]
fn odd_documents_do_not_panic() {
    for text in [
        "",
        "---\n",
        "- a\n- b\n",
        "just text",
        "a: &x 1\nb: *x\n",
        "b: *x\n",
        "!!map {a: 1}\n",
        "{[a]: 1}\n",
        "type: workflow\nname: W\nversion: 1\nsteps: [A:1]\n---\ntype: step\n",
        "\t\u{0}",
    ] {
        let result = wf(text);
        assert!(result.is_err(), "{text:?} should not load");
    }
}

#[test]
fn a_second_document_is_an_error_not_ignored() {
    let text = "---\ntype: workflow\nname: W\nversion: 1\nsteps: [A:1]\n--- # more\nname: X\n";
    assert_eq!(
        one_error(wf(text)),
        (
            6,
            "a second YAML document ('---') is not supported: one definition per file".to_string()
        )
    );
    // A leading `---` and one inside a block scalar are not a second document.
    let text = "---\ntype: workflow\nname: W\nversion: 1\nsteps: [A:1]\ndesc: |\n  ---\n";
    assert_eq!(wf(text).expect("one document").definitions.len(), 1);
}

#[test]
fn an_empty_file_says_so() {
    assert_eq!(
        one_error(wf("# nothing here\n")),
        (
            1,
            "the file is empty; expected 'type: workflow' and the definition's keys".to_string()
        )
    );
}

/// A directory with the code file `code.py`, for service and job files.
fn code_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("code.py"), "class C: pass\n").expect("write");
    dir
}

/// Every error's line and message (warnings left out).
fn errors_of(result: Result<Loaded, LoadError>) -> Vec<(usize, String)> {
    let err = result.expect_err("expected errors");
    err.diagnostics
        .iter()
        .filter(|d| !d.message.starts_with(WARNING_PREFIX))
        .map(|d| (d.origin.line, d.message.clone()))
        .collect()
}

fn service(loaded: &Loaded) -> &ServiceDef {
    match loaded.definitions.as_slice() {
        [Definition::Service(s)] => s,
        other => panic!("expected one service, got {other:?}"),
    }
}

fn job(loaded: &Loaded) -> &JobDef {
    match loaded.definitions.as_slice() {
        [Definition::Job(j)] => j,
        other => panic!("expected one job, got {other:?}"),
    }
}

/// A minimal valid service; `extra` is appended (lines 9 on).
fn service_text(extra: &str) -> String {
    format!(
        "type: service\nname: S\nversion: 1.0\nlang: python\nbase-class-name: QorusService\n\
         class-name: S\ncode: code.py\nmethods: [{{name: echo}}]\n{extra}"
    )
}

/// A minimal valid job; `extra` is appended (lines 8 on).
fn job_text(extra: &str) -> String {
    format!(
        "type: job\nname: J\nversion: 1.0\nlang: python\nbase-class-name: QorusJob\n\
         class-name: J\ncode: code.py\n{extra}"
    )
}

const EVERY_5: &str = "schedule: {minutes: '*/5', hours: '*', days: '*', months: '*', dow: '*'}\n";

#[test]
fn service_file_with_methods_and_qorus_extras() {
    let dir = code_dir();
    let path = dir.path().join("S-1.0.qsd.yaml");
    let text = "\
type: service
name: S
version: 1.0
desc: a service
author: someone
servicetype: USER
lang: python
class-based: true
base-class-name: QorusService
class-name: S
code: code.py
autostart: true
groups: [shop, ops]
resource: [templates/a.html]
methods:
  - name: echo
    desc: returns its arguments
  - name: info
    lock: WRITE
    internal: true
    write: true
    author: someone
  - {name: _private, lock: read}
";
    let loaded = parse_text(&path, text).expect("valid service");
    // `resource` is warned about and ignored; `class-based` is accepted silently.
    let warnings: Vec<_> = loaded
        .warnings
        .iter()
        .map(|w| (w.origin.line, w.message.as_str()))
        .collect();
    assert_eq!(
        warnings,
        [(
            14,
            "unknown key 'resource' ignored (not supported by Sluice yet)"
        )]
    );
    let s = service(&loaded);
    assert_eq!(
        (s.name.as_str(), s.version.as_str(), s.origin.line),
        ("S", "1.0", 1)
    );
    assert_eq!(s.desc.as_deref(), Some("a service"));
    assert_eq!(
        (
            s.servicetype.as_str(),
            s.lang.as_str(),
            s.base_class_name.as_str(),
            s.class_name.as_str()
        ),
        ("USER", "python", "QorusService", "S")
    );
    assert!(s.autostart);
    assert_eq!(s.groups, ["shop", "ops"]);
    assert_eq!(s.code.path, dir.path().join("code.py"));
    assert_eq!(s.code.source, "class C: pass\n");
    assert_eq!(s.code.hash.len(), 64);
    let methods: Vec<_> = s
        .methods
        .iter()
        .map(|m| {
            format!(
                "{} {:?} {} {} {} @{}",
                m.name, m.desc, m.lock, m.internal, m.write, m.origin.line
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            "echo Some(\"returns its arguments\") none false false @16",
            "info None write true true @18",
            "_private None read false false @23",
        ]
    );
}

#[test]
fn service_defaults() {
    let dir = code_dir();
    let loaded = parse_text(&dir.path().join("S-1.0.qsd.yaml"), &service_text("")).expect("valid");
    let s = service(&loaded);
    assert_eq!(s.servicetype, "USER");
    assert!(!s.autostart);
    assert!(s.groups.is_empty() && s.desc.is_none());
    assert_eq!(s.methods.len(), 1);
    assert_eq!(
        (
            s.methods[0].lock.as_str(),
            s.methods[0].internal,
            s.methods[0].write
        ),
        ("none", false, false)
    );
}

#[test]
fn bad_service_files() {
    let dir = code_dir();
    let path = dir.path().join("S-1.0.qsd.yaml");
    let parse = |text: &str| parse_text(&path, text);

    let (line, message) = one_error(parse(&service_text("servicetype: SYSTEM\n")));
    assert_eq!(line, 9);
    assert!(
        message.starts_with("servicetype SYSTEM is not supported"),
        "{message}"
    );
    assert_eq!(
        one_error(parse(&service_text("servicetype: other\n"))),
        (
            9,
            "key 'servicetype': 'other' is not one of USER (the default)".to_string()
        )
    );
    assert_eq!(
        one_error(parse(
            &service_text("").replace("lang: python", "lang: qore")
        )),
        (
            4,
            "lang 'qore' is not supported; Sluice supports only 'python'".to_string()
        )
    );
    let (line, message) = one_error(parse(
        &service_text("").replace("QorusService", "QorusSystemService"),
    ));
    assert_eq!(line, 5);
    assert!(message.contains("only QorusService"), "{message}");
    assert_eq!(
        one_error(parse(&service_text("autostart: 1\n"))),
        (
            9,
            "key 'autostart': expected true or false, found '1'".to_string()
        )
    );
    assert_eq!(
        one_error(parse(&service_text("").replace("code.py", "nope.py"))).0,
        7
    );

    // methods: required, a non-empty list of mappings.
    let no_methods = service_text("").replace("methods: [{name: echo}]\n", "");
    assert_eq!(
        one_error(parse(&no_methods)),
        (1, "service is missing required key 'methods'".to_string())
    );
    assert_eq!(
        one_error(parse(&format!("{no_methods}methods: []\n"))),
        (
            8,
            "key 'methods': a service needs at least one method".to_string()
        )
    );
    assert_eq!(
        one_error(parse(&format!("{no_methods}methods: echo\n"))),
        (
            8,
            "key 'methods': expected a list of methods, found 'echo'".to_string()
        )
    );
    let text = format!(
        "{no_methods}methods:\n  - echo\n  - desc: nameless\n  - name: a b\n  - name: x\n    lock: exclusive\n    internal: 'no'\n  - name: y\n  - name: y\n"
    );
    assert_eq!(
        errors_of(parse(&text)),
        [
            (
                9,
                "key 'methods': expected a mapping with 'name', 'desc', ..., found 'echo'"
                    .to_string()
            ),
            (10, "method is missing required key 'name'".to_string()),
            (
                11,
                "key 'name': method 'a b' is not a valid Python method name \
                 (letters, digits and '_', not starting with a digit)"
                    .to_string()
            ),
            (
                13,
                "key 'lock': 'exclusive' is not one of none, read, write".to_string()
            ),
            (
                14,
                "key 'internal': expected true or false, found 'no'".to_string()
            ),
            (
                16,
                "method 'y' is defined more than once (first at line 15)".to_string()
            ),
        ]
    );
}

#[test]
fn job_file_with_a_cron_schedule() {
    let dir = code_dir();
    let path = dir.path().join("J-1.0.qjob.yaml");
    let text = "\
type: job
name: J
version: 1.0
desc: cleans up
author: someone
lang: python
base-class-name: QorusJob
class-name: J
class-based: true
code: code.py
schedule:
  minutes: 0
  hours: '9-17'
  days: '*'
  months: jan-jun
  dow: mon-fri
active: false
run-skipped: true
expiry-date: 2027-01-01T00:00:00Z
groups: [ops]
";
    let loaded = parse_text(&path, text).expect("valid job");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let j = job(&loaded);
    assert_eq!(
        (j.name.as_str(), j.version.as_str(), j.class_name.as_str()),
        ("J", "1.0", "J")
    );
    assert_eq!(j.base_class_name, "QorusJob");
    assert_eq!(j.desc.as_deref(), Some("cleans up"));
    assert_eq!(j.code.source, "class C: pass\n");
    let crate::schedule::Schedule::Cron(cron) = &j.schedule else {
        panic!("expected a cron schedule: {:?}", j.schedule);
    };
    // An unquoted number is kept as written.
    assert_eq!(cron.fields(), ["0", "9-17", "*", "jan-jun", "mon-fri"]);
    assert_eq!(j.schedule.describe(), "0 9-17 * jan-jun mon-fri");
    assert!(!j.active && j.run_skipped);
    assert_eq!(j.expiry_date, Some(1_798_761_600_000));
    assert_eq!(j.groups, ["ops"]);
}

#[test]
fn job_defaults_recurring_and_expiry_forms() {
    let dir = code_dir();
    let path = dir.path().join("J-1.0.qjob.yaml");
    let loaded = parse_text(&path, &job_text("recurring: 90\n")).expect("valid");
    let j = job(&loaded);
    assert_eq!(
        j.schedule,
        crate::schedule::Schedule::Recurring(std::time::Duration::from_secs(90))
    );
    assert!(j.active && !j.run_skipped);
    assert_eq!(j.expiry_date, None);
    assert!(j.groups.is_empty());

    // Local forms are read in the system time zone.
    let tz = jiff::tz::TimeZone::system();
    let local = |y, m, d, h| {
        jiff::civil::date(y, m, d)
            .at(h, 0, 0, 0)
            .to_zoned(tz.clone())
            .expect("local time")
            .timestamp()
            .as_millisecond()
    };
    for (written, expected) in [
        ("2027-01-01", local(2027, 1, 1, 0)),
        ("'2027-01-01 06:00:00'", local(2027, 1, 1, 6)),
        ("2027-01-01T06:00", local(2027, 1, 1, 6)),
        ("2027-01-01T06:00:00+01:00", 1_798_779_600_000),
    ] {
        let text = job_text(&format!("{EVERY_5}expiry-date: {written}\n"));
        let loaded = parse_text(&path, &text).expect(written);
        assert_eq!(job(&loaded).expiry_date, Some(expected), "{written}");
    }
}

#[test]
fn bad_job_schedules_name_their_lines() {
    let dir = code_dir();
    let path = dir.path().join("J-1.0.qjob.yaml");
    let parse = |text: &str| parse_text(&path, text);

    assert_eq!(
        one_error(parse(&job_text(""))),
        (
            1,
            "job is missing required key 'schedule' (or 'recurring': a period in seconds)"
                .to_string()
        )
    );
    assert_eq!(
        one_error(parse(&job_text(&format!("{EVERY_5}recurring: 60\n")))),
        (
            9,
            "a job has either 'schedule' or 'recurring', not both".to_string()
        )
    );
    assert_eq!(
        one_error(parse(&job_text("recurring: 0\n"))),
        (
            8,
            "key 'recurring': 0 is too small (the minimum is 1)".to_string()
        )
    );
    assert_eq!(
        one_error(parse(&job_text("recurring: '60'\n"))),
        (
            8,
            "key 'recurring': expected an integer, found '60'".to_string()
        )
    );
    assert_eq!(
        one_error(parse(&job_text("schedule: '*/5 * * * *'\n"))),
        (
            8,
            "key 'schedule': expected a mapping of minutes, hours, days, months and dow, \
             found '*/5 * * * *'"
                .to_string()
        )
    );
    // Every missing field, at the schedule's mapping; an unknown one warned.
    let text = job_text("schedule:\n  minutes: 0\n  hours: 1\n  weeks: 2\n");
    let err = parse(&text).expect_err("incomplete schedule");
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (d.origin.line, d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (9, "schedule is missing required key 'days'"),
            (9, "schedule is missing required key 'months'"),
            (9, "schedule is missing required key 'dow'"),
            (
                11,
                "warning: unknown key 'weeks' ignored (not supported by Sluice yet)"
            ),
        ]
    );
    // Each bad field at its own line.
    let text = job_text(
        "schedule:\n  minutes: 61\n  hours: [1]\n  days: '*'\n  months: '*'\n  dow: '*'\n",
    );
    assert_eq!(
        errors_of(parse(&text)),
        [(
            10,
            "key 'hours': expected a string or an integer, found a list".to_string()
        )]
    );
    let text = job_text(
        "schedule:\n  minutes: 61\n  hours: '10-5'\n  days: '1,'\n  months: '*/0'\n  dow: funday\n",
    );
    assert_eq!(
        errors_of(parse(&text)),
        [
            (9, "schedule: minutes: 61 is out of range 0-59".to_string()),
            (
                10,
                "schedule: hours: range 10-5 is reversed (10 > 5)".to_string()
            ),
            (11, "schedule: days: trailing comma in '1,'".to_string()),
            (
                12,
                "schedule: months: step 0 in '*/0': a step must be at least 1".to_string()
            ),
            (
                13,
                "schedule: dow: 'funday' is not a number or day name".to_string()
            ),
        ]
    );
    // The diagnostic's full form, as `sluice load` prints it.
    let text = job_text(
        "schedule:\n  minutes: 61\n  hours: '*'\n  days: '*'\n  months: '*'\n  dow: '*'\n",
    );
    let err = parse(&text).expect_err("bad minutes");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:9: schedule: minutes: 61 is out of range 0-59",
            path.display()
        )
    );
}

#[test]
fn bad_job_keys() {
    let dir = code_dir();
    let path = dir.path().join("J-1.0.qjob.yaml");
    let parse = |text: &str| parse_text(&path, text);
    assert_eq!(
        one_error(parse(&job_text(&format!("{EVERY_5}active: maybe\n")))),
        (
            9,
            "key 'active': expected true or false, found 'maybe'".to_string()
        )
    );
    assert_eq!(
        one_error(parse(&job_text(&format!("{EVERY_5}run-skipped: 1\n")))),
        (
            9,
            "key 'run-skipped': expected true or false, found '1'".to_string()
        )
    );
    assert_eq!(
        one_error(parse(&job_text(&format!(
            "{EVERY_5}expiry-date: next year\n"
        )))),
        (
            9,
            "key 'expiry-date': 'next year' is not a date; expected e.g. \
             2027-01-01T00:00:00Z, 2027-01-01 00:00:00 (local time) or 2027-01-01"
                .to_string()
        )
    );
    assert_eq!(
        one_error(parse(&job_text(&format!("{EVERY_5}expiry-date: [1]\n")))),
        (
            9,
            "key 'expiry-date': expected a string, found a list".to_string()
        )
    );
    let (line, message) = one_error(parse(
        &job_text(EVERY_5).replace("QorusJob", "QorusService"),
    ));
    assert_eq!(line, 5);
    assert!(message.contains("only QorusJob"), "{message}");
    assert_eq!(
        one_error(parse(
            &job_text(EVERY_5).replace("lang: python", "lang: java")
        ))
        .0,
        4
    );
}

#[test]
fn duplicate_services_and_jobs_across_files() {
    let dir = code_dir();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let paths = vec![
        write("S-1.0.qsd.yaml", &service_text("")),
        write("again.qsd.yaml", &service_text("")),
        write("J-1.0.qjob.yaml", &job_text(EVERY_5)),
        write("again.qjob.yaml", &format!("\n{}", job_text(EVERY_5))),
        // The same name as a service and a job, or another version: not duplicates.
        write(
            "S.qjob.yaml",
            &job_text(EVERY_5).replace("name: J", "name: S"),
        ),
        write(
            "S-2.0.qsd.yaml",
            &service_text("").replace("version: 1.0", "version: 2.0"),
        ),
    ];
    let err = parse_files(&paths).expect_err("duplicates");
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (d.origin.file.clone(), d.origin.line, d.message.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                paths[1].clone(),
                1,
                format!(
                    "duplicate definition: service 'S' version '1.0' is also defined at {}:1",
                    paths[0].display()
                )
            ),
            (
                paths[3].clone(),
                2,
                format!(
                    "duplicate definition: job 'J' version '1.0' is also defined at {}:1",
                    paths[2].display()
                )
            ),
        ]
    );
    let mut ok = paths.clone();
    ok.remove(3);
    ok.remove(1);
    assert_eq!(
        parse_files(&ok).expect("no duplicates").definitions.len(),
        4
    );
}

#[test]
fn unquoted_star_in_a_schedule_gets_a_hint() {
    let dir = code_dir();
    let path = dir.path().join("J-1.0.qjob.yaml");
    let text = job_text("schedule:\n  minutes: */5\n  hours: '*'\n");
    let (line, message) = one_error(parse_text(&path, &text));
    assert_eq!(line, 9);
    assert!(
        message.starts_with("YAML syntax error")
            && message.ends_with("quote cron fields, e.g. minutes: \"*/5\")"),
        "{message}"
    );
}
