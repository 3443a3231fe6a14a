//! The languages added through the one-file-per-language interface (issue 9), end to end:
//! the real binary completes in a Ruby file over stdio with the user's default completion
//! settings — multi-line inside a method body, cut where the block ends; single-line inside
//! a call — and `pilotfish route` reports the language and the sensitive calls of Ruby, PHP,
//! Lua and Bash targets without calling a model.

use serde_json::Value;

use crate::harness::{Options, Server, suggestion};
use crate::support::double::{Behaviour, ModelDouble};
use crate::workspace::{Workspace, cloud, ollama};

#[test]
fn ruby_completion_over_stdio_follows_its_blocks() {
    // The model writes past the method's end; Pilotfish keeps the body only.
    let server = Server::start_with(
        Behaviour::answer_with(|request| {
            if request.prompt_text().ends_with("get(") {
                "key)\n    other = 1".to_owned()
            } else {
                "value = @items[key]\n    value * 2\n  end\n\n  def other\n".to_owned()
            }
        }),
        Options::default().completion(""),
    );

    let (uri, line, col) = server.open(
        "store.rb",
        "ruby",
        "require \"json\"\n\nclass Store\n  def get(key)\n    $0\n  end\nend\n",
    );
    let (result, call) = server.inline_and_call(&uri, line, col);
    assert_eq!(
        suggestion(&result).as_deref(),
        Some("value = @items[key]\n    value * 2"),
        "multi-line in the body, cut at `end`: {result}"
    );
    let call = call.expect("one model call");
    assert_eq!(call.body["suffix"], "\n  end\nend\n", "{}", call.body);

    let (uri, line, col) = server.open(
        "caller.rb",
        "ruby",
        "def run(store)\n  puts store.get($0)\nend\n",
    );
    let result = server.inline(&uri, line, col);
    assert_eq!(
        suggestion(&result).as_deref(),
        Some("key"),
        "one line, without the `)` the line already has: {result}"
    );
    server.lsp.shutdown_and_exit();
}

/// A spot in a file of one of the new languages, and what `route` must report for it.
struct RouteCase {
    file: &'static str,
    text: &'static str,
    spot: &'static str,
    language: &'static str,
    /// The enclosing target's kind and name.
    target: (&'static str, &'static str),
    /// The sensitive calls, sorted.
    sensitive: &'static [&'static str],
}

/// `pilotfish route --json` for a spot in each new language.
#[test]
fn route_reports_the_language_and_sensitive_calls_of_each_new_language() {
    let cases = [
        RouteCase {
            file: "deploy.rb",
            text: "class Deploy\n  def run(host)\n    system(\"ssh \" + host)\n    eval(File.read(host))\n  end\nend\n",
            spot: "deploy.rb:3:5",
            language: "ruby",
            target: ("method", "run"),
            sensitive: &["eval", "exec", "pathfrominput"],
        },
        RouteCase {
            file: "users.php",
            text: "<?php\nfunction find($db, $name) {\n    return mysqli_query($db, \"SELECT * FROM users WHERE name = '$name'\");\n}\n",
            spot: "users.php:3:5",
            language: "php",
            target: ("function_definition", "find"),
            sensitive: &["sql"],
        },
        RouteCase {
            file: "init.lua",
            text: "local M = {}\nfunction M.run(cmd)\n  os.execute(\"sh -c \" .. cmd)\n  return loadstring(cmd)\nend\nreturn M\n",
            spot: "init.lua:3:3",
            language: "lua",
            target: ("function_declaration", "M.run"),
            sensitive: &["eval", "exec"],
        },
        RouteCase {
            file: "deploy.sh",
            text: "#!/bin/bash\nrun() {\n  eval \"$1\"\n  echo done\n}\n",
            spot: "deploy.sh:4:3",
            language: "bash",
            target: ("function_definition", "run"),
            sensitive: &["eval"],
        },
    ];
    let fast = ModelDouble::start(Behaviour::answer("unused"));
    let big = ModelDouble::start(Behaviour::answer("unused"));
    let workspace = Workspace::new(&format!(
        "{}{}[routes]\nreview = [\"big\", \"fast\"]\n\n[[rules]]\ntask = \"review\"\nwhen = {{ sensitive = true, languages = [\"ruby\", \"php\", \"lua\", \"bash\"] }}\nuse = [\"big\"]\n",
        ollama("fast", &fast.base_url(), ""),
        cloud("big", &big.base_url(), ""),
    ));
    for case in &cases {
        let RouteCase {
            file,
            text,
            spot,
            language,
            target: (kind, name),
            sensitive,
        } = *case;
        workspace.write(file, text);
        let ran = workspace.run_configured(&["route", spot, "--task", "review", "--json"]);
        assert_eq!(ran.code(), Some(0), "{file}: {}", ran.both());
        let json: Value = serde_json::from_str(&ran.stdout())
            .unwrap_or_else(|e| panic!("{file}: JSON ({e}): {}", ran.both()));
        assert_eq!(json["features"]["language"], language, "{json:#}");
        assert_eq!(json["target"]["kind"], kind, "{json:#}");
        assert_eq!(json["target"]["name"], name, "{json:#}");
        let mut found: Vec<&str> = json["features"]["sensitive"]
            .as_array()
            .unwrap_or_else(|| panic!("features.sensitive is a list: {json:#}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        found.sort_unstable();
        found.dedup();
        assert_eq!(found, sensitive, "{file}: {json:#}");
        assert_eq!(
            json["decision"]["chain_source"], "rules[0]",
            "{file}: the rule on languages and sensitive calls applies: {json:#}"
        );
        let why = json["decision"]["why"].as_str().unwrap_or_default();
        assert!(why.contains(&format!("language {language}")), "{why}");

        let text_form = workspace.run_configured(&["route", spot, "--task", "review"]);
        assert!(
            text_form.stdout().contains(language),
            "{file}: the text form names the language: {}",
            text_form.both()
        );
    }
    assert!(fast.recorded().is_empty(), "{}", fast.summary());
    assert!(big.recorded().is_empty(), "{}", big.summary());
}
