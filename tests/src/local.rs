//! kiln on this machine: the emulated AWS, the resources, the functions
//! behind their local front doors, and the story printed while it runs.
//!
//! `kiln-local run` (what `make run` calls) drives it; end-to-end tests use
//! the same wiring. [`LocalKiln`] owns everything it starts and stops it all
//! when dropped.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::apigw::ApiGateway;
use crate::aws::{Aws, SnsQueue};
use crate::lambda::{LambdaFunction, OutputLine, Stream, bin_dir_override};
use crate::moto::Moto;

/// Names of the local resources: the same names the SAM template gives
/// them, as far as they apply.
pub mod names {
    pub const DEPLOY_TOPIC: &str = "kiln-deploy";
    pub const WEBHOOK_SECRET: &str = "kiln/webhook-secret";
    pub const WEBHOOK_ROUTE: &str = "/webhook";
}

/// Where the function binaries come from: `$KILN_BIN_DIR`, or the release
/// builds in the target directory (`make run` builds them first).
pub fn function_bin_dir() -> PathBuf {
    bin_dir_override().unwrap_or_else(|| crate::target_dir().join("release"))
}

/// The function binary `name` in [`function_bin_dir`], or how to build it.
pub fn function_binary(name: &str) -> Result<PathBuf, HarnessError> {
    let path = function_bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError(format!(
            "{} is missing: build it with `cargo build --release -p {name}` (make run does)",
            path.display()
        )))
    }
}

/// The resources provisioned on the emulator.
#[derive(Debug, Clone)]
pub struct Resources {
    pub deploy_topic_arn: String,
    pub webhook_secret_arn: String,
    /// The webhook secret's value, for signing local deliveries.
    pub webhook_secret: String,
}

/// The running local kiln.
pub struct LocalKiln {
    pub moto: Moto,
    pub aws: Aws,
    pub resources: Resources,
    /// Every message published to the deploy topic, read back through SQS.
    pub deploy_requests: SnsQueue,
    functions: Vec<Arc<LambdaFunction>>,
    gateway: Option<ApiGateway>,
}

impl std::fmt::Debug for LocalKiln {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKiln")
            .field("moto", &self.moto)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

impl LocalKiln {
    /// Starts the emulator and provisions kiln's resources on it.
    pub async fn provision() -> Result<LocalKiln, HarnessError> {
        let moto = Moto::try_start().await?;
        let aws = moto.aws().await;
        let deploy_topic_arn = aws.create_topic(names::DEPLOY_TOPIC).await;
        let webhook_secret = format!("local-{:016x}", crate::process::random_u64());
        let webhook_secret_arn = aws
            .create_secret(names::WEBHOOK_SECRET, &webhook_secret)
            .await;
        let deploy_requests = aws.subscribe_queue(&deploy_topic_arn).await;
        Ok(LocalKiln {
            moto,
            aws,
            resources: Resources {
                deploy_topic_arn,
                webhook_secret_arn,
                webhook_secret,
            },
            deploy_requests,
            functions: Vec::new(),
            gateway: None,
        })
    }

    /// Starts a function binary configured for this emulator, with `env` on
    /// top, its output passed to `on_line`; waits until it polls for events.
    pub async fn start_function(
        &mut self,
        name: &str,
        env: Vec<(String, String)>,
        on_line: impl Fn(&str, &OutputLine) + Send + Sync + 'static,
    ) -> Result<(Arc<LambdaFunction>, Duration), HarnessError> {
        let function = LambdaFunction::builder(name)
            .binary(function_binary(name)?)
            .env(self.moto.child_env())
            .env(env)
            .echo(false)
            .on_line(on_line)
            .try_start()
            .await?;
        let function = Arc::new(function);
        self.functions.push(Arc::clone(&function));
        match function.wait_ready(Duration::from_secs(60)).await {
            Ok(init) => Ok((function, init)),
            Err(failure) => Err(HarnessError(format!("{name} {failure}"))),
        }
    }

    /// Starts deploy-trigger behind the local API Gateway; returns the
    /// webhook URL and the function's init time.
    pub async fn start_deploy_trigger(
        &mut self,
        on_line: impl Fn(&str, &OutputLine) + Send + Sync + 'static,
    ) -> Result<(String, Duration), HarnessError> {
        let env = vec![
            (
                "WEBHOOK_SECRET_ARN".to_string(),
                self.resources.webhook_secret_arn.clone(),
            ),
            (
                "DEPLOY_TOPIC_ARN".to_string(),
                self.resources.deploy_topic_arn.clone(),
            ),
            // The fixtures push to `master`.
            (
                "DEPLOY_BRANCHES".to_string(),
                "main=production,master=production".to_string(),
            ),
        ];
        let (function, init) = self.start_function("deploy-trigger", env, on_line).await?;
        let gateway = ApiGateway::start(names::WEBHOOK_ROUTE, function).await?;
        let url = gateway.url();
        self.gateway = Some(gateway);
        Ok((url, init))
    }
}

/// One checked step of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub expected: String,
    pub observed: String,
    pub ok: bool,
}

/// The readable story `kiln-local` prints: narration, checked steps, and a
/// summary table at the end.
#[derive(Debug)]
pub struct Story {
    steps: Vec<Step>,
    started: Instant,
}

impl Default for Story {
    fn default() -> Self {
        Story::new()
    }
}

impl Story {
    pub fn new() -> Story {
        Story {
            steps: Vec::new(),
            started: Instant::now(),
        }
    }

    /// A heading for what happens next.
    pub fn chapter(&self, title: &str) {
        println!("\n==> {title}");
    }

    /// One line of narration.
    pub fn say(&self, text: &str) {
        println!("    {text}");
        let _ = std::io::stdout().flush();
    }

    /// Records and prints a checked step.
    pub fn check(&mut self, name: &str, expected: &str, observed: &str, ok: bool) -> bool {
        println!("    {} {name}: {observed}", mark(ok));
        self.steps.push(Step {
            name: name.to_string(),
            expected: expected.to_string(),
            observed: observed.to_string(),
            ok,
        });
        ok
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether every step passed (and there was at least one).
    pub fn all_ok(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }

    /// The summary table.
    pub fn summary(&self) -> String {
        let width = |f: fn(&Step) -> &str, title: &str| {
            self.steps
                .iter()
                .map(|s| f(s).chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
                .min(60)
        };
        let (w_step, w_expected, w_observed) = (
            width(|s| &s.name, "step"),
            width(|s| &s.expected, "expected"),
            width(|s| &s.observed, "observed"),
        );
        let mut out = format!(
            "{:<w_step$}  {:<w_expected$}  {:<w_observed$}  \n",
            "step", "expected", "observed"
        );
        out.push_str(&format!(
            "{}  {}  {}  -\n",
            "-".repeat(w_step),
            "-".repeat(w_expected),
            "-".repeat(w_observed)
        ));
        for step in &self.steps {
            out.push_str(&format!(
                "{:<w_step$}  {:<w_expected$}  {:<w_observed$}  {}\n",
                clip(&step.name, w_step),
                clip(&step.expected, w_expected),
                clip(&step.observed, w_observed),
                mark(step.ok)
            ));
        }
        let passed = self.steps.iter().filter(|s| s.ok).count();
        out.push_str(&format!(
            "\n{passed}/{} steps passed in {:.1} s\n",
            self.steps.len(),
            self.started.elapsed().as_secs_f64()
        ));
        out
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn clip(text: &str, width: usize) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.chars().count() <= width {
        first_line.to_string()
    } else {
        let mut clipped: String = first_line.chars().take(width.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

/// Prints a function's output line in the story, indented and named.
pub fn print_function_line(function: &str, line: &OutputLine) {
    let stream = match line.stream {
        Stream::Stdout => "",
        Stream::Stderr => " (stderr)",
    };
    println!("      │ {function}{stream}: {}", line.text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_step_with_its_mark() {
        let mut story = Story::new();
        story.check("signed push", "200", "200", true);
        story.check("bad signature", "401", "500 Internal Server Error", false);
        let summary = story.summary();
        assert!(summary.contains("signed push"));
        assert!(summary.contains("✓"));
        assert!(summary.contains("✗"));
        assert!(summary.contains("1/2 steps passed"));
        assert!(!story.all_ok());
    }

    #[test]
    fn long_observations_are_clipped_to_one_line() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ab\ncd", 10), "ab");
    }
}
