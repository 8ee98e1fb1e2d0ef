//! Publishing to SNS: the port and its SDK adapter.
//!
//! deploy-trigger publishes deploy requests and watchdog publishes alerts
//! through the same [`Publisher`] port, so both get the same FIFO handling
//! and the same classification of failures into retryable and not.

use std::future::Future;

use crate::aws::LazyClient;

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundMessage {
    /// The JSON body.
    pub body: String,
    /// The SNS Subject (at most 100 characters; email subscribers see it).
    pub subject: Option<String>,
    /// String message attributes, for subscription filter policies.
    pub attributes: Vec<(String, String)>,
    /// FIFO topics: the message group.
    pub group_id: Option<String>,
    /// FIFO topics: the deduplication id.
    pub deduplication_id: Option<String>,
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("publishing to {topic_arn} failed: {message}")]
pub struct PublishError {
    pub topic_arn: String,
    pub message: String,
    /// Whether trying again later can succeed (throttling, 5xx, network).
    pub retryable: bool,
}

/// The port: publish one message to a topic, returning the SNS message id.
pub trait Publisher: Send + Sync {
    fn publish(
        &self,
        topic_arn: &str,
        message: OutboundMessage,
    ) -> impl Future<Output = Result<String, PublishError>> + Send;
}

/// Whether a topic ARN names a FIFO topic.
pub fn is_fifo_topic(topic_arn: &str) -> bool {
    topic_arn.ends_with(".fifo")
}

/// SNS adapter.
#[derive(Clone, Debug)]
pub struct SnsPublisher {
    client: LazyClient<aws_sdk_sns::Client>,
}

impl SnsPublisher {
    /// From a ready client or a [`LazyClient`] built on first use.
    pub fn new(client: impl Into<LazyClient<aws_sdk_sns::Client>>) -> Self {
        SnsPublisher {
            client: client.into(),
        }
    }
}

impl Publisher for SnsPublisher {
    async fn publish(
        &self,
        topic_arn: &str,
        message: OutboundMessage,
    ) -> Result<String, PublishError> {
        use aws_sdk_sns::error::ProvideErrorMetadata;
        use aws_sdk_sns::types::MessageAttributeValue;

        let mut request = self
            .client
            .get()
            .await
            .publish()
            .topic_arn(topic_arn)
            .message(message.body)
            .set_subject(message.subject);
        for (name, value) in message.attributes {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PublishError {
                    topic_arn: topic_arn.to_string(),
                    message: format!("message attribute {name}: {e}"),
                    retryable: false,
                })?;
            request = request.message_attributes(name, attribute);
        }
        if is_fifo_topic(topic_arn) {
            request = request
                .set_message_group_id(message.group_id)
                .set_message_deduplication_id(message.deduplication_id);
        }
        match request.send().await {
            Ok(output) => Ok(output.message_id.unwrap_or_default()),
            Err(err) => {
                let retryable = match &err {
                    aws_sdk_sns::error::SdkError::ServiceError(service) => {
                        let status = service.raw().status().as_u16();
                        status >= 500
                            || status == 429
                            || matches!(
                                service.err().code(),
                                Some("Throttling" | "ThrottlingException" | "ThrottledException")
                            )
                    }
                    // Timeouts, dispatch and connection failures.
                    _ => true,
                };
                let message = match (err.code(), err.message()) {
                    (Some(code), Some(text)) => format!("{code}: {text}"),
                    _ => crate::aws::error_chain(&err),
                };
                Err(PublishError {
                    topic_arn: topic_arn.to_string(),
                    message,
                    retryable,
                })
            }
        }
    }
}

/// An in-memory publisher for tests: records messages, and can be told to
/// fail.
#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct RecordingPublisher {
        published: Mutex<Vec<(String, OutboundMessage)>>,
        fail_with: Mutex<Option<PublishError>>,
    }

    impl RecordingPublisher {
        pub fn new() -> Self {
            Self::default()
        }

        /// Every later publish fails with this error.
        pub fn fail_with(&self, error: PublishError) {
            if let Ok(mut f) = self.fail_with.lock() {
                *f = Some(error);
            }
        }

        /// Later publishes succeed again.
        pub fn succeed(&self) {
            if let Ok(mut f) = self.fail_with.lock() {
                *f = None;
            }
        }

        pub fn published(&self) -> Vec<(String, OutboundMessage)> {
            self.published.lock().map(|p| p.clone()).unwrap_or_default()
        }
    }

    impl Publisher for RecordingPublisher {
        async fn publish(
            &self,
            topic_arn: &str,
            message: OutboundMessage,
        ) -> Result<String, PublishError> {
            if let Some(err) = self.fail_with.lock().ok().and_then(|f| f.clone()) {
                return Err(err);
            }
            let mut published = self.published.lock().map_err(|_| PublishError {
                topic_arn: topic_arn.to_string(),
                message: "fake poisoned".into(),
                retryable: false,
            })?;
            published.push((topic_arn.to_string(), message));
            Ok(format!("fake-message-{}", published.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_topics_are_recognised_by_suffix() {
        assert!(is_fifo_topic(
            "arn:aws:sns:eu-west-1:123456789012:kiln-deploy.fifo"
        ));
        assert!(!is_fifo_topic(
            "arn:aws:sns:eu-west-1:123456789012:kiln-deploy"
        ));
    }
}
