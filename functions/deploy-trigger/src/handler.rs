//! The webhook flow, and the status code each outcome gets.
//!
//! The checks run in a fixed order, and the first failure decides the
//! answer:
//!
//! 1. the body is decoded to raw bytes (413 too large, 400 invalid base64
//!    or empty);
//! 2. GitHub's headers are read (400 without `X-GitHub-Delivery` or
//!    `X-GitHub-Event`, 401 without `X-Hub-Signature-256`);
//! 3. the signature is checked against the current secret, and against the
//!    previous one only when the current one does not match
//!    (401 malformed or mismatched, 503 when the secret can't be read);
//! 4. the content type is checked (415 unless JSON or a form with
//!    `payload`);
//! 5. the event is decided (400 malformed, 403 repository not allowed,
//!    200 ping, 202 ignored, 202 skipped by a skip marker or
//!    `DEPLOY_PATHS`: see [`crate::skip`]);
//! 6. the deploy request is published (200 queued, 502/503 when the publish
//!    fails, so GitHub shows a failed delivery that can be redelivered).
//!
//! Every outcome is an HTTP answer: the handler never returns a Lambda
//! error (API Gateway would turn it into a bare 500) and never answers 2xx
//! for a deploy it failed to queue.

use http::{HeaderMap, HeaderValue};
use kiln::messages::deploy_request::{self, DeployEvent, DeployRequest, is_commit_sha};
use kiln::secrets::{SecretError, SecretFetcher};
use kiln::sns::{OutboundMessage, PublishError, Publisher};
use kiln::{KilnError, Metrics, SecretCache, VersionStage};
use lambda_http::Body;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::config::Config;
use crate::github::{self, AnyEvent, DeploymentEvent, PayloadError, PushEvent, Repository};
use crate::request::{self, BodyError, FormError, HeaderError, UnsupportedContentType};
use crate::routing::Route;
use crate::signature::{self, SignatureFormatError};
use crate::skip::{self, Skip};

/// What the handler needs: configuration and the two AWS ports.
pub struct Deps<F, P> {
    pub config: Config,
    pub secrets: SecretCache<F>,
    pub publisher: P,
    pub metrics: Metrics,
}

/// A request that was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A deploy request was published.
    Queued {
        environment: String,
        message_id: String,
    },
    /// GitHub's `ping` on hook creation.
    Pong,
    /// Understood, but nothing to deploy.
    Ignored(String),
    /// A push for an environment that a rule said not to deploy.
    Skipped(Skip),
}

/// A request that was refused, or could not be completed. The `Display`
/// text is what the log line says; [`Rejection::reason`] is what the caller
/// is told. Neither ever contains the secret or the signature.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(
        "the X-Hub-Signature-256 header is missing (kiln accepts only SHA-256 signatures, not X-Hub-Signature)"
    )]
    MissingSignature,
    #[error(transparent)]
    MalformedSignature(#[from] SignatureFormatError),
    #[error("the signature does not match the webhook secret")]
    SignatureMismatch,
    #[error("the webhook secret could not be read: {0}")]
    SecretUnavailable(#[source] SecretError),
    #[error(transparent)]
    ContentType(#[from] UnsupportedContentType),
    #[error(transparent)]
    Form(#[from] FormError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("the {event} payload has no usable {field}")]
    MissingField {
        event: &'static str,
        field: &'static str,
    },
    #[error("repository {0} is not in ALLOWED_REPOSITORIES")]
    RepositoryNotAllowed(String),
    #[error("the deploy request could not be queued: {0}")]
    PublishFailed(#[source] PublishError),
}

impl KilnError for Rejection {
    fn error_type(&self) -> &'static str {
        match self {
            Rejection::Body(BodyError::TooLarge) => "BodyTooLarge",
            Rejection::Body(BodyError::InvalidBase64) => "InvalidBase64",
            Rejection::Body(BodyError::Empty) => "EmptyBody",
            Rejection::Header(_) => "BadHeader",
            Rejection::MissingSignature => "MissingSignature",
            Rejection::MalformedSignature(_) => "MalformedSignature",
            Rejection::SignatureMismatch => "SignatureMismatch",
            Rejection::SecretUnavailable(_) => "SecretUnavailable",
            Rejection::ContentType(_) => "UnsupportedContentType",
            Rejection::Form(_) | Rejection::Payload(_) | Rejection::MissingField { .. } => {
                "InvalidPayload"
            }
            Rejection::RepositoryNotAllowed(_) => "RepositoryNotAllowed",
            Rejection::PublishFailed(_) => "PublishFailed",
        }
    }
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Body(BodyError::TooLarge) => 413,
            Rejection::Body(_)
            | Rejection::Header(_)
            | Rejection::Form(_)
            | Rejection::Payload(_)
            | Rejection::MissingField { .. } => 400,
            Rejection::MissingSignature
            | Rejection::MalformedSignature(_)
            | Rejection::SignatureMismatch => 401,
            Rejection::RepositoryNotAllowed(_) => 403,
            Rejection::ContentType(_) => 415,
            Rejection::PublishFailed(e) if !e.retryable => 502,
            Rejection::PublishFailed(_) | Rejection::SecretUnavailable(_) => 503,
        }
    }

    /// What the caller is told. Failures on our side say to redeliver and
    /// keep their details (ARNs, SDK errors) for the log.
    pub fn reason(&self) -> String {
        match self {
            Rejection::SecretUnavailable(_) => {
                "the webhook secret could not be read; redeliver later".into()
            }
            Rejection::PublishFailed(_) => {
                "the deploy request could not be queued; redeliver later".into()
            }
            other => other.to_string(),
        }
    }
}

/// What the function decided to do with an authenticated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Pong,
    Ignore(String),
    Skip(Skip),
    Deploy(Box<DeployRequest>),
}

/// The JSON body of every answer.
#[derive(Debug, Serialize)]
struct Reply<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    delivery_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    /// The rule that skipped a deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'static str>,
}

/// Handles one API Gateway HTTP API (payload 2.0) request. Never fails and
/// never panics on input: every outcome is an HTTP answer.
pub async fn handle<F: SecretFetcher, P: Publisher>(
    deps: &Deps<F, P>,
    event: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    let span = tracing::info_span!(
        "webhook",
        delivery_id = tracing::field::Empty,
        event = tracing::field::Empty
    );
    async {
        let mut delivery_id = None;
        let outcome = process(deps, event, &mut delivery_id).await;
        let delivery_id = delivery_id.as_deref();
        match &outcome {
            Ok(accepted) => record_accepted(&deps.metrics, accepted),
            Err(rejection) => record_rejection(&deps.metrics, rejection),
        }
        respond(&outcome, delivery_id)
    }
    .instrument(span)
    .await
}

async fn process<F: SecretFetcher, P: Publisher>(
    deps: &Deps<F, P>,
    event: ApiGatewayV2httpRequest,
    delivery_id_out: &mut Option<String>,
) -> Result<Accepted, Rejection> {
    // 1. The exact bytes GitHub signed.
    let body = request::decode_body(event.body, event.is_base64_encoded)?;
    let headers = &event.headers;

    // 2. GitHub's headers.
    let delivery_id = request::delivery_id(headers)?;
    tracing::Span::current().record("delivery_id", delivery_id.as_str());
    *delivery_id_out = Some(delivery_id.clone());
    let event_name = request::event_name(headers)?;
    tracing::Span::current().record("event", event_name.as_str());
    let signature_header = signature_header(headers)?;

    // 3. The signature, against the current version of the secret and, only
    //    when that one does not match, the previous one (a delivery signed
    //    during a rotation): the common case reads one version, not two.
    let signature = signature::parse_header(signature_header.as_bytes())?;
    let secret_arn = &deps.config.webhook_secret_arn;
    let current = deps
        .secrets
        .current(secret_arn)
        .await
        .map_err(Rejection::SecretUnavailable)?;
    if !signature::matches(&body, &signature, &current) {
        let previous = deps
            .secrets
            .get(secret_arn, VersionStage::Previous)
            .await
            .map_err(Rejection::SecretUnavailable)?;
        match previous {
            Some(previous)
                if previous != current && signature::matches(&body, &signature, &previous) =>
            {
                tracing::info!("signed with the previous secret version (AWSPREVIOUS)")
            }
            _ => return Err(Rejection::SignatureMismatch),
        }
    }

    // 4. The JSON document, in one of GitHub's two content types.
    let content_type = request::content_type(headers)?;
    let json = request::json_document(&body, content_type)?;

    // 5. What to do with the event.
    let decision = decide(
        &deps.config,
        &event_name,
        &delivery_id,
        &json,
        OffsetDateTime::now_utc(),
    )?;

    // 6. Queue the deploy.
    match decision {
        Decision::Pong => Ok(Accepted::Pong),
        Decision::Ignore(reason) => Ok(Accepted::Ignored(reason)),
        Decision::Skip(skip) => Ok(Accepted::Skipped(skip)),
        Decision::Deploy(deploy) => {
            let message_id = deps
                .publisher
                .publish(&deps.config.deploy_topic_arn, outbound(&deploy))
                .await
                .map_err(Rejection::PublishFailed)?;
            Ok(Accepted::Queued {
                environment: deploy.environment,
                message_id,
            })
        }
    }
}

/// The signature header's one value; a missing one is 401, not 400.
fn signature_header(headers: &HeaderMap) -> Result<&HeaderValue, Rejection> {
    match request::single_header(headers, signature::HEADER, "X-Hub-Signature-256") {
        Ok(value) => Ok(value),
        Err(HeaderError::Missing(_)) => Err(Rejection::MissingSignature),
        Err(_) => Err(SignatureFormatError::Multiple.into()),
    }
}

/// Decides what an authenticated event asks for. Pure: the clock is passed
/// in.
pub fn decide(
    config: &Config,
    event: &str,
    delivery_id: &str,
    json: &[u8],
    now: OffsetDateTime,
) -> Result<Decision, Rejection> {
    match event {
        "push" => {
            let push: PushEvent = github::parse(event, json)?;
            decide_push(config, push, delivery_id, now)
        }
        "deployment" => {
            let deployment: DeploymentEvent = github::parse(event, json)?;
            decide_deployment(config, deployment, delivery_id, now)
        }
        _ => {
            let any: AnyEvent = github::parse(event, json)?;
            // Events without a repository (an organization's ping) are not
            // from a repository outside the list.
            if let Some(full_name) = any.repository.and_then(|r| r.full_name) {
                check_allowed(config, &full_name)?;
            }
            Ok(match event {
                "ping" => Decision::Pong,
                "deployment_status" => Decision::Ignore(
                    "deployment_status events are ignored (deploying on them would loop)".into(),
                ),
                other => Decision::Ignore(format!("{other} events are not deployed")),
            })
        }
    }
}

fn decide_push(
    config: &Config,
    push: PushEvent,
    delivery_id: &str,
    now: OffsetDateTime,
) -> Result<Decision, Rejection> {
    let missing = |field| Rejection::MissingField {
        event: "push",
        field,
    };
    let repository = push.repository.clone().unwrap_or_default();
    let event_at = repository.pushed_at;
    let full_name = repository
        .full_name
        .clone()
        .ok_or(missing("repository.full_name"))?;
    check_allowed(config, &full_name)?;
    let git_ref = push.git_ref.clone().ok_or(missing("ref"))?;
    if push.is_deletion() {
        return Ok(Decision::Ignore(format!("{git_ref} was deleted")));
    }
    let environment = match config.routes.route(&git_ref) {
        Route::Deploy(environment) => environment.to_string(),
        Route::UnmatchedBranch(branch) => {
            return Ok(Decision::Ignore(format!(
                "branch {branch} matches no rule in DEPLOY_BRANCHES"
            )));
        }
        Route::UnmatchedTag(tag) => {
            return Ok(Decision::Ignore(format!(
                "tag {tag} matches no rule in DEPLOY_TAGS"
            )));
        }
        Route::NotABranchOrTag => {
            return Ok(Decision::Ignore(format!(
                "{git_ref} is neither a branch nor a tag"
            )));
        }
    };
    if let Some(skip) = skip::check(&config.deploy_paths, &push, &git_ref, &environment) {
        return Ok(Decision::Skip(skip));
    }
    let sha = push
        .after
        .filter(|sha| is_commit_sha(sha))
        .ok_or(missing("after (a 40-character lowercase commit id)"))?;
    // The commit this push moved the ref from: orders two pushes that
    // GitHub stamped with the same second. All zeros (a new ref) is no commit.
    let before = push
        .before
        .filter(|sha| is_commit_sha(sha) && sha.bytes().any(|b| b != b'0'));
    let sender = push
        .sender
        .and_then(|s| s.login)
        .or_else(|| push.pusher.and_then(|p| p.name))
        .ok_or(missing("sender.login"))?;
    Ok(Decision::Deploy(Box::new(DeployRequest {
        kind: deploy_request::KIND.into(),
        version: deploy_request::VERSION,
        delivery_id: delivery_id.into(),
        event: DeployEvent::Push,
        clone_url: clone_url(repository, "push")?,
        repository: full_name,
        git_ref,
        sha,
        environment,
        sender,
        deployment_id: None,
        requested_at: now,
        event_at,
        before,
    })))
}

fn decide_deployment(
    config: &Config,
    event: DeploymentEvent,
    delivery_id: &str,
    now: OffsetDateTime,
) -> Result<Decision, Rejection> {
    let missing = |field| Rejection::MissingField {
        event: "deployment",
        field,
    };
    let repository = event.repository.unwrap_or_default();
    let full_name = repository
        .full_name
        .clone()
        .ok_or(missing("repository.full_name"))?;
    check_allowed(config, &full_name)?;
    let deployment = event.deployment.ok_or(missing("deployment"))?;
    let id = deployment.id.ok_or(missing("deployment.id"))?;
    let sha = deployment
        .sha
        .filter(|sha| is_commit_sha(sha))
        .ok_or(missing(
            "deployment.sha (a 40-character lowercase commit id)",
        ))?;
    let environment = deployment
        .environment
        .filter(|e| !e.is_empty() && e.len() <= 255 && !e.chars().any(char::is_control))
        .ok_or(missing("deployment.environment"))?;
    let git_ref = deployment
        .git_ref
        .filter(|r| !r.is_empty())
        .map(|r| full_ref(&r))
        .ok_or(missing("deployment.ref"))?;
    let sender = event
        .sender
        .and_then(|s| s.login)
        .ok_or(missing("sender.login"))?;
    Ok(Decision::Deploy(Box::new(DeployRequest {
        kind: deploy_request::KIND.into(),
        version: deploy_request::VERSION,
        delivery_id: delivery_id.into(),
        event: DeployEvent::Deployment,
        clone_url: clone_url(repository, "deployment")?,
        repository: full_name,
        git_ref,
        sha,
        environment,
        sender,
        deployment_id: Some(id),
        requested_at: now,
        event_at: deployment.created_at,
        before: None,
    })))
}

/// A deployment's `ref` may be a short branch or tag name; GitHub doesn't
/// say which, and kiln deploys the `sha` either way, so a short name is
/// recorded as a branch.
fn full_ref(git_ref: &str) -> String {
    if git_ref.starts_with("refs/") {
        git_ref.to_string()
    } else {
        format!("refs/heads/{git_ref}")
    }
}

fn clone_url(repository: Repository, event: &'static str) -> Result<String, Rejection> {
    repository
        .clone_url
        .filter(|url| !url.is_empty())
        .ok_or(Rejection::MissingField {
            event,
            field: "repository.clone_url",
        })
}

fn check_allowed(config: &Config, full_name: &str) -> Result<(), Rejection> {
    if config.allowed_repositories.allows(full_name) {
        Ok(())
    } else {
        Err(Rejection::RepositoryNotAllowed(full_name.to_string()))
    }
}

/// The SNS message: the deploy request, attributes for filter policies,
/// and the FIFO group (the repository, so one repository's deploys stay in
/// order) and deduplication id (the delivery, so a redelivery is dropped).
pub fn outbound(deploy: &DeployRequest) -> OutboundMessage {
    OutboundMessage {
        body: deploy.to_json(),
        subject: None,
        attributes: vec![
            ("environment".into(), deploy.environment.clone()),
            ("repository".into(), deploy.repository.clone()),
            ("event".into(), deploy.event.as_str().into()),
        ],
        group_id: Some(deploy.repository.clone()),
        deduplication_id: Some(deploy.delivery_id.clone()),
    }
}

fn record_accepted(metrics: &Metrics, accepted: &Accepted) {
    match accepted {
        Accepted::Queued {
            environment,
            message_id,
        } => {
            metrics.count("DeploysRequested", 1);
            tracing::info!(environment, message_id, "deploy request queued");
        }
        Accepted::Pong => tracing::info!("ping answered"),
        Accepted::Ignored(reason) => {
            metrics.count("WebhooksIgnored", 1);
            tracing::info!(reason, "event ignored");
        }
        Accepted::Skipped(skip) => {
            let rule = skip.rule.as_str();
            metrics.count_by("DeploysSkipped", 1, ("Rule", rule));
            tracing::info!(
                rule,
                environment = skip.environment,
                reason = skip.reason,
                "deploy skipped"
            );
        }
    }
}

fn record_rejection(metrics: &Metrics, rejection: &Rejection) {
    let status = rejection.status();
    let error_type = rejection.error_type();
    let detail = kiln::aws::error_chain(rejection);
    if status >= 500 {
        metrics.count("WebhookFailures", 1);
        tracing::error!(status, error_type, detail, "webhook not processed");
    } else {
        if status == 401 {
            metrics.count("SignatureFailures", 1);
        }
        metrics.count("WebhooksRejected", 1);
        tracing::warn!(status, error_type, detail, "webhook rejected");
    }
}

fn respond(
    outcome: &Result<Accepted, Rejection>,
    delivery_id: Option<&str>,
) -> ApiGatewayV2httpResponse {
    let (status, reply) = match outcome {
        Ok(Accepted::Queued {
            environment,
            message_id,
        }) => (
            200,
            Reply {
                status: "queued",
                reason: None,
                delivery_id,
                environment: Some(environment),
                message_id: Some(message_id),
                rule: None,
            },
        ),
        Ok(Accepted::Pong) => (
            200,
            Reply {
                status: "pong",
                reason: None,
                delivery_id,
                environment: None,
                message_id: None,
                rule: None,
            },
        ),
        Ok(Accepted::Ignored(reason)) => (
            202,
            Reply {
                status: "ignored",
                reason: Some(reason.clone()),
                delivery_id,
                environment: None,
                message_id: None,
                rule: None,
            },
        ),
        Ok(Accepted::Skipped(skip)) => (
            202,
            Reply {
                status: "skipped",
                reason: Some(skip.reason.clone()),
                delivery_id,
                environment: Some(&skip.environment),
                message_id: None,
                rule: Some(skip.rule.as_str()),
            },
        ),
        Err(rejection) => (
            rejection.status(),
            Reply {
                status: if rejection.status() >= 500 {
                    "retry"
                } else {
                    "rejected"
                },
                reason: Some(rejection.reason()),
                delivery_id,
                environment: None,
                message_id: None,
                rule: None,
            },
        ),
    };
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Serialising a struct of strings cannot fail.
    response.body = Some(Body::Text(
        serde_json::to_string(&reply).unwrap_or_default(),
    ));
    response
}

#[cfg(test)]
mod tests;
