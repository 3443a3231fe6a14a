//! The `pilotfish` binary: the command line (clap), logging to stderr or a file (stdout
//! carries LSP only), the runtime, and the one-shot commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use pilotfish::completion::{CompletionEngine, NoSuggestion};
use pilotfish::documents::{Documents, file_uri};
use pilotfish::lsp::{ServeOptions, serve_stdio};
use pilotfish::position::{self, LineCol, PositionEncoding};
use pilotfish::providers::Providers;
use pilotfish::resilience::Health;
use pilotfish::route_input::RouteInput;
use pilotfish::router::COMPLETE;
use pilotfish::session::Session;
use pilotfish::syntax::Language;
use pilotfish::syntax::features::enclosing_target;
use pilotfish::telemetry::{self, UsageLog};

/// How long a one-shot command waits for its usage lines to be written before it exits.
const USAGE_FLUSH: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(
    name = "pilotfish",
    version,
    about = "AI sidecar language server: inline completion and routed code actions"
)]
struct Cli {
    /// Configuration file (default: $PILOTFISH_CONFIG, ./.pilotfish.toml,
    /// $XDG_CONFIG_HOME/pilotfish/config.toml, then the built-in default).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Accepted and ignored: the server always speaks LSP on stdio, and some clients
    /// (vscode-languageclient's stdio transport among them) add this flag.
    #[arg(long, hide = true)]
    stdio: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// One inline completion at FILE:LINE:COL (1-based line and column), printed to stdout.
    Complete {
        /// FILE:LINE:COL
        spot: String,
        /// How long to wait for the model (default: the model's timeout).
        #[arg(long, value_name = "MS")]
        budget_ms: Option<u64>,
    },
    /// Print the effective configuration (defaults merged with the file).
    Config,
    /// Probe every configured model; exit 1 if a route has no live model.
    Check,
    /// Run a code action on the enclosing function/class (or the whole small file) at
    /// FILE:LINE[:COL]: explain prints markdown, refactor a unified diff, review the
    /// findings. The model that answered and why go to stderr.
    Action {
        /// explain, refactor, review or the NAME of an [actions.NAME] table.
        action: String,
        /// FILE:LINE[:COL] (1-based)
        spot: String,
    },
    /// Usage summary from the usage log: per model, task and language — requests, latency,
    /// cache hits, acceptance, check failures, tokens, cost — and what routing saved.
    Stats {
        /// Only what happened since: a span back from now (1d, 7d, 12h) or a UTC date
        /// (2026-05-01).
        #[arg(long, value_name = "SPAN|DATE")]
        since: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decide every request of a usage log again under the configuration given with
    /// --config, without calling a model: how the model choice, the cost and the expected
    /// latency would change, per task.
    Replay {
        /// The usage log (e.g. ~/.local/state/pilotfish/usage.jsonl); rotated files beside it
        /// are read too.
        log: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Dry run: the routing decision at FILE:LINE:COL, the candidate chain and the reason
    /// for each step, without calling a model.
    Route {
        /// FILE:LINE:COL (1-based)
        spot: String,
        /// complete, explain, refactor, review or an [actions.*] name.
        #[arg(long, default_value = "complete")]
        task: String,
        /// Print the decision as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log_file.as_deref()) {
        eprintln!("pilotfish: cannot open the log file: {e}");
        return ExitCode::from(2);
    }
    // One thread runs every task: the server's work is waiting on editors and models, and
    // a wake-up on the same thread costs far less than handing work between threads (a few
    // hundred microseconds per request on 2 cores). Parsing big files and anything else
    // that blocks goes to the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pilotfish: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match cli.command {
        None => {
            let code = runtime.block_on(serve_stdio(ServeOptions {
                config_path: cli.config,
            }));
            let _ = std::io::stdout().flush();
            // Do not wait for stdin's blocking reader or in-flight model calls.
            runtime.shutdown_timeout(Duration::from_millis(50));
            code as u8
        }
        Some(Command::Config) => match load_session(cli.config.as_deref()) {
            Ok(session) => {
                println!("# from: {}", session.origin());
                print!("{}", session.config().to_display_toml());
                0
            }
            Err(code) => code,
        },
        Some(Command::Check) => match load_session(cli.config.as_deref()) {
            Ok(session) => {
                let report = runtime.block_on(pilotfish::check::check(&session, &Providers::new()));
                println!("# config: {}", session.origin());
                print!("{}", report.render());
                if report.all_routes_live() { 0 } else { 1 }
            }
            Err(code) => code,
        },
        Some(Command::Route { spot, task, json }) => match load_session(cli.config.as_deref()) {
            Ok(session) => route_once(&session, &spot, &task, json),
            Err(code) => code,
        },
        Some(Command::Action { action, spot }) => match load_session(cli.config.as_deref()) {
            Ok(session) => runtime.block_on(action_once(session, &action, &spot)),
            Err(code) => code,
        },
        Some(Command::Complete { spot, budget_ms }) => match load_session(cli.config.as_deref()) {
            Ok(session) => runtime.block_on(complete_once(session, &spot, budget_ms)),
            Err(code) => code,
        },
        Some(Command::Stats { since, json }) => match load_session(cli.config.as_deref()) {
            Ok(session) => stats_once(&session, since.as_deref(), json),
            Err(code) => code,
        },
        Some(Command::Replay { log, json }) => match load_session(cli.config.as_deref()) {
            Ok(session) => replay_once(&session, &log, json),
            Err(code) => code,
        },
    };
    ExitCode::from(code)
}

fn init_logging(file: Option<&Path>) -> std::io::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PILOTFISH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder.with_ansi(false).with_writer(Arc::new(file)).init();
        }
        None => builder.with_ansi(false).with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// The session of a one-shot command: the configuration found from the working directory,
/// which is also the workspace root (for `.pilotfish.toml` and workspace-relative globs).
fn load_session(explicit: Option<&Path>) -> Result<Session, u8> {
    let cwd = std::env::current_dir().ok();
    Session::load(explicit, cwd.as_deref()).map_err(|e| {
        eprintln!("pilotfish: {e}");
        2
    })
}

/// A file opened for a one-shot command, and the cursor in it.
struct Spot {
    path: PathBuf,
    snapshot: pilotfish::documents::Snapshot,
    cursor: usize,
}

/// Reads FILE of `FILE:LINE:COL`, parses it, and finds the cursor; errors are printed.
fn open_spot(spot: &str) -> Result<Spot, u8> {
    open_spot_with(spot, parse_spot(spot))
}

/// [`open_spot`] for an already parsed spot (`FILE:LINE[:COL]` for actions).
fn open_spot_with(spot: &str, parsed: Result<(PathBuf, u32, u32), String>) -> Result<Spot, u8> {
    let fail = |e: String| {
        eprintln!("pilotfish: {e}");
        2
    };
    let (file, line, col) = parsed.map_err(fail)?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
    let path = std::path::absolute(&file).unwrap_or(file.clone());
    let uri = file_uri(&path.to_string_lossy());
    let mut docs = Documents::default();
    docs.open_parsed(&uri, Language::from_path(&file.to_string_lossy()), 0, &text);
    let snapshot = docs.snapshot(&uri).map_err(|e| fail(e.to_string()))?;
    let cursor = position::to_byte(
        &snapshot.rope,
        LineCol { line, col },
        PositionEncoding::Utf32,
    )
    .map_err(|e| fail(format!("{spot}: {e}")))?;
    Ok(Spot {
        path,
        snapshot,
        cursor,
    })
}

fn route_once(session: &Session, spot: &str, task: &str, json: bool) -> u8 {
    let Ok(Spot {
        snapshot, cursor, ..
    }) = open_spot(spot)
    else {
        return 2;
    };
    let (rope, tree, language) = (&snapshot.rope, snapshot.tree.as_ref(), snapshot.language);
    let target = enclosing_target(rope, tree, language, cursor);
    let input = RouteInput::for_target(task, &snapshot, &target);
    let (feats, secrets) = (&input.features, input.secrets.unwrap_or(0));
    // A dry run in a fresh process: no model has failed yet; the day's spend is what the
    // usage log says (every Pilotfish process of the user).
    let (health, usage) = (
        Arc::new(Health::new()),
        UsageLog::open(&session.config().telemetry),
    );
    let decision = if task == COMPLETE {
        // Completion sends its context window, not the target: route it as completion does.
        let engine = CompletionEngine::new(
            session.completion().cache_entries,
            Providers::new(),
            health,
            usage,
        );
        engine.decide(session, &snapshot, cursor)
    } else {
        input.decide(session, &health, &usage)
    };
    if json {
        let out = serde_json::json!({
            "target": { "kind": target.kind, "name": target.name, "lines": feats.lines },
            "features": {
                "language": language.name(),
                "node_kind": feats.node_kind,
                "lines": feats.lines,
                "tokens": feats.tokens,
                "branches": feats.branches,
                "complexity": feats.complexity(),
                "max_nesting": feats.max_nesting,
                "sensitive": feats.sensitive_calls.iter().map(|c| format!("{:?}", c.kind).to_lowercase()).collect::<Vec<_>>(),
                "syntax_errors": feats.syntax_errors,
                "secrets": secrets,
            },
            "decision": decision,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        let name = target.name.as_deref().unwrap_or("-");
        println!(
            "target: {} {name} ({} lines, ~{} tokens, complexity {}, nesting {}, {} sensitive calls, {} syntax errors, {} secrets)",
            target.kind,
            feats.lines,
            feats.tokens,
            feats.complexity(),
            feats.max_nesting,
            feats.sensitive_calls.len(),
            feats.syntax_errors,
            secrets
        );
        print!("{}", decision.explain());
        println!(
            "(a one-shot command has no health or latency history: `pilotfish check` probes the models; the server's debug log shows its live decisions)"
        );
    }
    if decision.chain().next().is_some() {
        0
    } else {
        1
    }
}

/// `FILE:LINE:COL` → (file, 0-based line, 0-based column in characters).
fn parse_spot(spot: &str) -> Result<(PathBuf, u32, u32), String> {
    let mut parts = spot.rsplitn(3, ':');
    let (col, line, file) = (parts.next(), parts.next(), parts.next());
    let (Some(col), Some(line), Some(file)) = (col, line, file) else {
        return Err(format!("expected FILE:LINE:COL, got {spot:?}"));
    };
    let number = |s: &str, what: &str| -> Result<u32, String> {
        match s.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n - 1),
            _ => Err(format!("{what} must be a number from 1, got {s:?}")),
        }
    };
    Ok((
        PathBuf::from(file),
        number(line, "LINE")?,
        number(col, "COL")?,
    ))
}

/// `FILE:LINE[:COL]` → (file, 0-based line, 0-based column; 0 when absent).
fn parse_action_spot(spot: &str) -> Result<(PathBuf, u32, u32), String> {
    if let Ok(parsed) = parse_spot(spot) {
        return Ok(parsed);
    }
    let Some((file, line)) = spot.rsplit_once(':') else {
        return Err(format!("expected FILE:LINE[:COL], got {spot:?}"));
    };
    match line.parse::<u32>() {
        Ok(n) if n >= 1 && !file.is_empty() => Ok((PathBuf::from(file), n - 1, 0)),
        _ => Err(format!(
            "expected FILE:LINE[:COL] with LINE a number from 1, got {spot:?}"
        )),
    }
}

/// `pilotfish action KIND FILE:LINE[:COL]`: the same pipeline as the editor's command.
/// Exit 0 with the result on stdout; 1 when no model answered or the answer was unusable;
/// 2 for a bad spot or config.
async fn action_once(session: Session, action: &str, spot: &str) -> u8 {
    use pilotfish::actions::ActionKind;
    use pilotfish::actions::run::{
        ActionEnv, ActionInput, ActionResult, Spot as ActionSpot, run_action,
    };

    let Ok(Spot {
        path,
        snapshot,
        cursor,
    }) = open_spot_with(spot, parse_action_spot(spot))
    else {
        return 2;
    };
    let display = session.display_path(&path.to_string_lossy());
    let input = ActionInput {
        snapshot,
        spot: ActionSpot::Cursor(cursor),
        kind: ActionKind::from_name(action),
    };
    let usage = UsageLog::open(&session.config().telemetry);
    let limit = session.config().budget.daily_usd.unwrap_or_default();
    let env = ActionEnv {
        session: Arc::new(session),
        health: Arc::new(Health::new()),
        providers: Providers::new(),
        usage: usage.clone(),
    };
    let outcome = run_action(input, env, &|_| {}).await;
    let provenance = match &outcome {
        Ok(o) => &o.provenance,
        Err(e) => &e.provenance,
    };
    if provenance
        .decision
        .as_ref()
        .is_some_and(|d| d.budget_exhausted)
    {
        if let Some(notice) = usage.budget_notice(limit) {
            eprintln!("{notice}");
        }
    }
    usage.flush(USAGE_FLUSH);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(model) = &e.provenance.model {
                eprintln!("pilotfish: answered by {model} ({})", e.provenance.reason);
            }
            eprintln!("pilotfish: {action}: {}", e.message);
            return 1;
        }
    };
    match &outcome.result {
        ActionResult::Document { markdown } => println!("{markdown}"),
        ActionResult::Edit { diff, .. } => print!("{diff}"),
        ActionResult::Diagnostics(findings) => {
            if findings.is_empty() {
                println!("no findings");
            }
            for f in findings {
                let lines = f.finding.document_lines(outcome.first_line);
                let (a, b) = (lines.start() + 1, lines.end() + 1);
                let at = if a == b {
                    format!("{a}")
                } else {
                    format!("{a}-{b}")
                };
                let severity = format!("{:?}", f.finding.severity).to_lowercase();
                let cwe = f
                    .finding
                    .cwe
                    .as_deref()
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default();
                println!("{display}:{at}: {severity}{cwe}: {}", f.finding.message);
            }
        }
    }
    for note in &outcome.notes {
        eprintln!("pilotfish: note: {note}");
    }
    let model = outcome.provenance.model.as_deref().unwrap_or("?");
    eprintln!(
        "pilotfish: answered by {model} ({})",
        outcome.provenance.reason
    );
    0
}

/// `pilotfish complete FILE:LINE:COL`: one completion through the same engine, session and
/// routing as the editor's, waiting for the model (`--budget-ms`, else the slowest model's
/// timeout) rather than the interactive budget.
async fn complete_once(session: Session, spot: &str, budget_ms: Option<u64>) -> u8 {
    let Ok(Spot {
        snapshot, cursor, ..
    }) = open_spot(spot)
    else {
        return 2;
    };
    let slowest = session
        .config()
        .models
        .values()
        .map(|m| m.timeout_ms)
        .max()
        .unwrap_or(30_000);
    let budget = serde_json::json!({ "completion": { "budget_ms": budget_ms.unwrap_or(slowest) } });
    let session = match session.with_overrides(&budget) {
        Ok(session) => Arc::new(session),
        Err(e) => {
            eprintln!("pilotfish: --budget-ms: {e}");
            return 2;
        }
    };
    let usage = UsageLog::open(&session.config().telemetry);
    let engine = CompletionEngine::new(
        session.completion().cache_entries,
        Providers::new(),
        Arc::new(Health::new()),
        usage.clone(),
    );
    let outcome = engine.complete(&session, &snapshot, cursor, &[]).await;
    usage.flush(USAGE_FLUSH);
    match outcome {
        Ok(s) => {
            println!("{}", s.text);
            eprintln!("pilotfish: answered by {} ({})", s.model, s.source.name());
            0
        }
        Err(NoSuggestion::Failed(why)) => {
            eprintln!("pilotfish: no model answered: {why}");
            1
        }
        Err(why) => {
            eprintln!("pilotfish: no suggestion here ({why:?})");
            0
        }
    }
}

/// `pilotfish stats [--since SPAN|DATE] [--json]`.
fn stats_once(session: &Session, since: Option<&str>, json: bool) -> u8 {
    let config = session.config();
    let Some(path) = config.telemetry.usage_log_path() else {
        eprintln!("pilotfish: the usage log is off (telemetry.usage_log = \"\")");
        return 2;
    };
    match telemetry::stats_of_log(&path, since, config) {
        Ok(report) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            0
        }
        Ok(report) => {
            println!("# usage log: {}", path.display());
            print!("{}", telemetry::stats::render(&report));
            0
        }
        Err(e) => {
            eprintln!("pilotfish: {e}");
            2
        }
    }
}

/// `pilotfish replay LOG --config OTHER.toml [--json]`: `other` is the configuration the
/// log's requests are decided again under.
fn replay_once(other: &Session, log: &Path, json: bool) -> u8 {
    let (lines, unreadable) = match telemetry::load(log, None) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("pilotfish: cannot read {}: {e}", log.display());
            return 2;
        }
    };
    if unreadable > 0 {
        eprintln!(
            "pilotfish: {unreadable} lines of {} could not be read",
            log.display()
        );
    }
    let prices = telemetry::prices(other.config());
    let report = telemetry::replay::replay(&lines, other.router(), &prices);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!(
            "{}",
            telemetry::replay::render(&report, &other.origin().to_string())
        );
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots() {
        assert_eq!(
            parse_spot("src/a.rs:3:7"),
            Ok((PathBuf::from("src/a.rs"), 2, 6))
        );
        assert_eq!(
            parse_spot("C:/x/a.rs:1:1"),
            Ok((PathBuf::from("C:/x/a.rs"), 0, 0))
        );
        assert!(parse_spot("a.rs:0:1").is_err());
        assert!(parse_spot("a.rs:3").is_err());
        assert!(parse_spot("a.rs:x:1").is_err());
        assert_eq!(
            parse_action_spot("src/a.rs:3"),
            Ok((PathBuf::from("src/a.rs"), 2, 0))
        );
        assert_eq!(
            parse_action_spot("src/a.rs:3:7"),
            Ok((PathBuf::from("src/a.rs"), 2, 6))
        );
        assert!(parse_action_spot("a.rs:0").is_err());
        assert!(parse_action_spot("a.rs").is_err());
    }
}
