//! Alerts through Amazon SNS (`notify.sns_topic_arn`): a message when a
//! job fails or times out, and when `check` finds a problem.
//!
//! A failed nightly backup must reach a person even when nobody reads the
//! scheduler's mail; SNS fans out to e-mail, chat and paging services. The
//! messages carry what the job's result and `check` already print (job
//! name, job id, instance, outcome, reason), which never hold a secret: the
//! passwords are read on the instance only and the agent's reasons are
//! redacted before they are published to the status parameter. Failing to
//! publish is a warning, never a changed exit code: the alert is a second
//! channel, the exit code the first.

use crate::aws::AwsClients;

/// SNS refuses a subject longer than this (characters, ASCII, one line).
const SUBJECT_MAX: usize = 100;

/// Where alerts go.
#[derive(Debug, Clone)]
pub struct Notifier {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
}

/// A message could not be published.
#[derive(Debug, thiserror::Error)]
#[error("cannot publish to {topic_arn}: {detail}")]
pub struct NotifyError {
    topic_arn: String,
    detail: String,
}

impl Notifier {
    /// The notifier of `topic_arn` (`notify.sns_topic_arn`), if one is set.
    pub fn new(clients: &AwsClients, topic_arn: Option<&str>) -> Option<Notifier> {
        topic_arn.map(|topic_arn| Notifier {
            sns: clients.sns.clone(),
            topic_arn: topic_arn.to_owned(),
        })
    }

    /// Publishes `message` under `subject` (cut to what SNS takes).
    pub async fn publish(&self, subject: &str, message: &str) -> Result<(), NotifyError> {
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject_line(subject))
            .message(message)
            .send()
            .await
            .map_err(|err| NotifyError {
                topic_arn: self.topic_arn.clone(),
                detail: crate::aws::describe_sdk_error(&err),
            })?;
        Ok(())
    }

    /// [`Notifier::publish`], with a failure printed as a warning.
    pub async fn publish_or_warn(&self, subject: &str, message: &str) {
        if let Err(err) = self.publish(subject, message).await {
            eprintln!("backup-cloud: warning: the alert was not sent: {err}");
        }
    }
}

/// `subject` as SNS takes it: printable ASCII on one line, at most
/// [`SUBJECT_MAX`] characters.
fn subject_line(subject: &str) -> String {
    subject
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(SUBJECT_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_printable_ascii_line_sns_accepts() {
        assert_eq!(subject_line("job orders: failed"), "job orders: failed");
        assert_eq!(subject_line("a\nb\té"), "a?b??");
        assert_eq!(subject_line(&"x".repeat(300)).len(), SUBJECT_MAX);
    }
}
