//! A program's progress notifications, delivered to the request they are about, in order.
//!
//! rmcp hands notifications to its handler on tasks of their own, so a progress notification
//! the program wrote before its answer could reach the agent after it, when its request's
//! stream has already closed. [`ProgressTap`] takes progress notifications off the program's
//! transport as they are read, in the program's own order, and queues each for the request it
//! names ([`ProgressRoutes`]); the request forwards its queue before it returns its answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use rmcp::RoleClient;
use rmcp::model::{JsonRpcMessage, ProgressNotificationParam, ProgressToken, ServerNotification};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;

/// Progress that arrived before its request was registered (a fast program can answer
/// before the request's token is known here): kept, a few, for the request to take.
const EARLY: usize = 64;

/// The queues of the requests waiting for progress, by the program's progress token.
#[derive(Debug, Default)]
pub(super) struct ProgressRoutes(Mutex<Routes>);

#[derive(Debug, Default)]
struct Routes {
    waiting: HashMap<ProgressToken, mpsc::UnboundedSender<ProgressNotificationParam>>,
    early: VecDeque<ProgressNotificationParam>,
}

impl ProgressRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a request's token; its queue holds whatever arrived for it already.
    pub(super) fn route(
        &self,
        token: &ProgressToken,
    ) -> mpsc::UnboundedReceiver<ProgressNotificationParam> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut routes = self.lock();
        let early = std::mem::take(&mut routes.early);
        for progress in early {
            if progress.progress_token == *token {
                let _ = sender.send(progress);
            } else {
                routes.early.push_back(progress);
            }
        }
        routes.waiting.insert(token.clone(), sender);
        receiver
    }

    /// Forgets a request's token once it is answered.
    pub(super) fn forget(&self, token: &ProgressToken) {
        self.lock().waiting.remove(token);
    }

    fn deliver(&self, progress: ProgressNotificationParam) {
        let mut routes = self.lock();
        match routes.waiting.get(&progress.progress_token) {
            Some(queue) => {
                let _ = queue.send(progress);
            }
            None => {
                if routes.early.len() == EARLY {
                    routes.early.pop_front();
                }
                routes.early.push_back(progress);
            }
        }
    }
}

/// A program's transport with its progress notifications taken off as they are read.
pub(super) struct ProgressTap<T> {
    inner: T,
    routes: std::sync::Arc<ProgressRoutes>,
}

impl<T> ProgressTap<T> {
    pub(super) fn new(inner: T, routes: std::sync::Arc<ProgressRoutes>) -> Self {
        Self { inner, routes }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for ProgressTap<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            match self.inner.receive().await? {
                JsonRpcMessage::Notification(notification) => match notification.notification {
                    ServerNotification::ProgressNotification(progress) => {
                        self.routes.deliver(progress.params);
                    }
                    other => {
                        return Some(JsonRpcMessage::Notification(
                            rmcp::model::JsonRpcNotification {
                                jsonrpc: notification.jsonrpc,
                                notification: other,
                            },
                        ));
                    }
                },
                message => return Some(message),
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
