//! Unit progress as it changes: the unit dashboard, computed again when an assessment or the
//! agency advances, at most once per interval per subscription, and sent only when it differs.

use futures_util::Stream;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::assessments::{self, UnitSummary};
use crate::auth::Actor;
use crate::error::AppError;
use crate::ids::UnitId;
use crate::state::AppState;

/// The dashboard of a unit now, then after every change that alters it. Allowed to those who may
/// see the dashboard (the same check as the `unitDashboard` query).
pub async fn unit_progress(
    state: &AppState,
    actor: &Actor,
    unit: UnitId,
) -> Result<impl Stream<Item = Result<Vec<UnitSummary>, AppError>> + Send + use<>, AppError> {
    // Subscribe before the first computation, so that no change after it goes unnoticed.
    let mut rx = state.live.inner.advanced.subscribe();
    let turn = state.live.setting_up().await;
    let first = assessments::unit_dashboard(state, actor, unit).await?;
    drop(turn);
    let state = state.clone();
    let actor = actor.clone();
    let own_agency = crate::events::Stream::Agency(actor.agency_id).key();
    Ok(async_stream::stream! {
        let settings = state.live.settings().clone();
        let mut last = first.clone();
        yield Ok(first);
        loop {
            // Wait for a change that may matter, or the safety poll.
            let woken = tokio::time::timeout(settings.poll, async {
                loop {
                    match rx.recv().await {
                        Ok(stream) if stream.starts_with("assessment:") || *stream == *own_agency || &*stream == "*" => {
                            return true;
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => return true,
                        Err(RecvError::Closed) => return false,
                    }
                }
            })
            .await;
            if woken == Ok(false) {
                return;
            }
            // Let a burst finish, then compute once for all of it.
            tokio::time::sleep(settings.progress_interval).await;
            loop {
                match rx.try_recv() {
                    Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return,
                }
            }
            match Box::pin(assessments::unit_dashboard(&state, &actor, unit)).await {
                Ok(now) if now != last => {
                    last = now.clone();
                    yield Ok(now);
                }
                Ok(_) => {}
                Err(err) => {
                    yield Err(err);
                    return;
                }
            }
        }
    })
}
