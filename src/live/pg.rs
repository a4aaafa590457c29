//! PostgreSQL: every server sharing the database learns of every commit through `NOTIFY
//! attest_events '<stream>:<seq>'`, sent by `events::append` inside the writing transaction.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;

use super::Hub;

const CHANNEL: &str = "attest_events";

/// Listens until aborted, reconnecting after a failure. After every reconnection all tailers
/// read again, since notifications sent while disconnected are lost.
pub(super) async fn listen(hub: Hub) {
    let mut backoff = Duration::from_millis(200);
    let mut connected_before = false;
    loop {
        match connect(&hub).await {
            Ok(mut listener) => {
                if connected_before {
                    tracing::info!("live: listening for notifications again");
                    hub.wake_all();
                }
                connected_before = true;
                backoff = Duration::from_millis(200);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => match parse(n.payload()) {
                            Some((stream, seq)) => hub.wake(stream, seq),
                            None => tracing::warn!(payload = n.payload(), "live: unexpected notification"),
                        },
                        // The connection was lost: connect again and wake everything.
                        Ok(None) => break,
                        Err(err) => {
                            tracing::warn!(error = %err, "live: notification listener failed");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "live: cannot listen for notifications"),
        }
        // Meanwhile the tailers' safety poll still delivers, only later.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn connect(hub: &Hub) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(hub.inner.url.expose()).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// `<stream>:<seq>`; the stream key itself contains a colon.
fn parse(payload: &str) -> Option<(&str, i64)> {
    let (stream, seq) = payload.rsplit_once(':')?;
    Some((stream, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_notification_names_the_stream_and_its_new_head() {
        assert_eq!(
            parse("assessment:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed:42"),
            Some(("assessment:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed", 42))
        );
        assert_eq!(parse("system:7"), Some(("system", 7)));
        assert_eq!(parse("garbage"), None);
    }
}
