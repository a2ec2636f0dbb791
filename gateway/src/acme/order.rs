//! One order for one hostname (RFC 8555 §7.4): new order, an answer to the operator's chosen
//! challenge (HTTP-01 or TLS-ALPN-01) per pending authorization published in the store (and
//! this node's memory), the CA told to validate,
//! then finalize with a fresh key and download the chain. The answers are withdrawn however
//! the order ends.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use wharf_tenancy::store::now_ms;
use wharf_tenancy::Store;

use super::challenges::Challenges;
use super::ChallengeKind;

/// How long a published answer stays valid at most (an order takes seconds; a crashed node's
/// answer must not linger).
const ANSWER_TTL_MS: i64 = 10 * 60 * 1000;

/// How long to wait for the CA to validate, and then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

#[derive(Debug, thiserror::Error)]
pub(super) enum OrderError {
    /// The CA's own words (a problem document), e.g. why validation failed.
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    #[error("the CA offers no {kind} challenge for {host}")]
    NoChallenge { kind: &'static str, host: String },
    #[error("validation of {host} failed: {detail}")]
    Invalid { host: String, detail: String },
    #[error("authorization for {host} is {status:?}")]
    Authorization {
        host: String,
        status: AuthorizationStatus,
    },
    #[error("publishing the challenge answer: {0}")]
    Store(#[from] wharf_tenancy::StoreError),
}

/// What the CA issued: the chain (leaf first) and its private key, both PEM.
pub(super) struct Issued {
    pub(super) chain_pem: String,
    pub(super) key_pem: String,
}

pub(super) async fn issue(
    account: &Account,
    store: &Store,
    challenges: &Challenges,
    host: &str,
    kind: ChallengeKind,
    publish_wait: Duration,
) -> Result<Issued, OrderError> {
    let mut tokens = Vec::new();
    let result = run(
        account,
        store,
        challenges,
        host,
        kind,
        publish_wait,
        &mut tokens,
    )
    .await;
    for token in tokens {
        challenges.remove(&token);
        if let Err(e) = store.delete_acme_challenge(&token).await {
            // It expires by itself (ANSWER_TTL_MS).
            tracing::warn!(host, "cannot withdraw an ACME challenge answer: {e}");
        }
    }
    result
}

async fn run(
    account: &Account,
    store: &Store,
    challenges: &Challenges,
    host: &str,
    kind: ChallengeKind,
    publish_wait: Duration,
    tokens: &mut Vec<String>,
) -> Result<Issued, OrderError> {
    let challenge_type = match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let ids = [Identifier::Dns(host.to_string())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut auths = order.authorizations();
    while let Some(auth) = auths.next().await {
        let mut auth = auth?;
        match auth.status {
            AuthorizationStatus::Pending => {}
            // Validated recently for this account: nothing to answer.
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(OrderError::Authorization {
                    host: host.into(),
                    status,
                })
            }
        }
        let mut challenge =
            auth.challenge(challenge_type.clone())
                .ok_or_else(|| OrderError::NoChallenge {
                    kind: kind.as_str(),
                    host: host.into(),
                })?;
        let answer = wharf_tenancy::AcmeChallenge {
            token: challenge.token.clone(),
            hostname: host.into(),
            key_authorization: challenge.key_authorization().as_str().to_string(),
            kind: kind.as_str().into(),
        };
        let token = answer.token.clone();
        store
            .put_acme_challenge(
                &token,
                host,
                &answer.key_authorization,
                &answer.kind,
                now_ms() + ANSWER_TTL_MS,
            )
            .await?;
        challenges.insert(answer);
        tokens.push(token);
        // Every node reads the answers this often: the CA may reach any of them.
        tokio::time::sleep(publish_wait).await;
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&POLL).await?;
    if status != OrderStatus::Ready {
        return Err(OrderError::Invalid {
            host: host.into(),
            detail: why_invalid(&mut order).await,
        });
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&POLL).await?;
    Ok(Issued { chain_pem, key_pem })
}

/// The CA's reason, from the failed challenge of an invalid order (RFC 8555 §7.1.6).
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut auths = order.authorizations();
    while let Some(Ok(mut auth)) = auths.next().await {
        if let Ok(state) = auth.refresh().await {
            reasons.extend(
                state
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref().map(ToString::to_string)),
            );
        }
    }
    if reasons.is_empty() {
        "the order became invalid".into()
    } else {
        reasons.join("; ")
    }
}
