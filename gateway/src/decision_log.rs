//! The decision audit: every allow and deny, in a local hash-chained log, shipped to the issuer.
//!
//! Each `tools/call`, `resources/read` and `prompts/get` decision becomes a [`Record`] (who,
//! through which agents, which upstream and target, a digest of the arguments, and the rule
//! that decided) appended to `decisions.jsonl` in the configured directory, each line chained
//! to the one before by `hash = SHA-256(prev_hash ‖ canonical JSON)`. The proxy only hands the
//! record to a channel; a writer appends batches and syncs them to disk, and a shipper posts
//! what the issuer has not yet acknowledged to its `POST /audit/decisions`, resuming from the
//! acknowledged sequence number (kept in `shipped`). While the issuer is unreachable the log
//! simply grows on disk; nothing is dropped, and the issuer's per-gateway cursor makes a
//! batch sent twice harmless.
//!
//! A crash can lose only records still in the channel (microseconds of decisions) and leaves at
//! most a torn last line, which is cut off at the next start.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};

/// The first record's `prev_hash`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const LOG_FILE: &str = "decisions.jsonl";
const CURSOR_FILE: &str = "shipped";
const SHIP_BATCH: usize = 500;

/// Where decisions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The directory of the log and the shipping cursor.
    pub dir: PathBuf,
    /// This gateway's name at the issuer.
    pub gateway_id: String,
    /// The issuer's ingest endpoint and its token; `None` keeps the log local.
    pub ship_to: Option<(String, crate::secret::Secret)>,
}

/// One decision, as the proxy reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unix seconds.
    pub at: i64,
    /// `allow` or `deny`.
    pub decision: String,
    /// The user.
    pub sub: String,
    /// The agents acting, current actor first (as in `act`).
    pub act: Vec<String>,
    /// The grant.
    pub gid: Option<String>,
    /// The token.
    pub jti: String,
    /// The upstream.
    pub upstream: String,
    /// The JSON-RPC method.
    pub method: String,
    /// The tool, resource or prompt.
    pub target: String,
    /// SHA-256 (hex) of the canonical JSON of the arguments.
    pub arguments_digest: Option<String>,
    /// The deciding rule (`permit` or a deny code).
    pub rule: String,
    /// The approval a person gave for this call, when it needed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The OpenTelemetry trace of the request, when traces are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl Decision {
    /// A decision about a request under `claims` at `upstream`, with no arguments and no
    /// approval named.
    pub(crate) fn under(
        claims: &portcullis_policy::Claims,
        upstream: &str,
        method: &str,
        target: &str,
        (decision, rule): (&str, &str),
    ) -> Self {
        Decision {
            at: crate::clock::now(),
            decision: decision.to_owned(),
            sub: claims.subject.clone(),
            act: claims
                .actors
                .iter()
                .flat_map(|chain| chain.actors())
                .map(|a| a.sub.clone())
                .collect(),
            gid: claims.grant_id.clone(),
            jti: claims.token_id.clone(),
            upstream: upstream.to_owned(),
            method: method.to_owned(),
            target: target.to_owned(),
            arguments_digest: None,
            rule: rule.to_owned(),
            approval: None,
            trace_id: crate::telemetry::current_trace_id(),
        }
    }
}

/// A line of the log: a decision in its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// What was decided.
    #[serde(flatten)]
    pub decision: Decision,
    /// The previous record's hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

impl Record {
    fn chained(seq: i64, decision: Decision, prev_hash: String) -> Self {
        let mut record = Record {
            seq,
            decision,
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.expected_hash();
        record
    }

    /// The hash this record should carry: over its previous hash and its canonical JSON
    /// without either hash (serde_json maps are sorted by key).
    pub fn expected_hash(&self) -> String {
        let mut body = serde_json::to_value(self).expect("records serialise");
        let object = body.as_object_mut().expect("a record is an object");
        object.remove("hash");
        object.remove("prev_hash");
        hex(Sha256::new()
            .chain_update(self.prev_hash.as_bytes())
            .chain_update(body.to_string().as_bytes())
            .finalize()
            .as_slice())
    }

    /// The form the issuer's ingest endpoint takes.
    fn shipped(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("records serialise");
        value
            .as_object_mut()
            .expect("a record is an object")
            .remove("prev_hash");
        value
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the canonical JSON of `arguments`.
pub fn digest(arguments: &Value) -> String {
    hex(Sha256::digest(arguments.to_string().as_bytes()).as_slice())
}

/// The proxy's handle: records go to the writer through a channel.
#[derive(Debug)]
pub struct DecisionLog {
    sender: mpsc::UnboundedSender<Decision>,
}

impl DecisionLog {
    /// Hands a decision to the writer. Never blocks the request.
    pub fn record(&self, decision: Decision) {
        if self.sender.send(decision).is_err() {
            tracing::error!("the decision log writer has stopped; a decision was not logged");
        }
    }
}

/// The writer and shipper, run as one background task.
#[derive(Debug)]
pub struct DecisionWriter {
    config: AuditConfig,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Decision>>>,
    file: Mutex<Option<File>>,
    head: Mutex<(i64, String)>,
    written: Notify,
}

/// Opens (or creates) the log, repairing a torn last line, and recovers the chain head.
pub fn open(config: AuditConfig) -> std::io::Result<(DecisionLog, DecisionWriter)> {
    std::fs::create_dir_all(&config.dir)?;
    let path = config.dir.join(LOG_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)?;
    let head = recover(&mut file, &path)?;
    let (sender, receiver) = mpsc::unbounded_channel();
    Ok((
        DecisionLog { sender },
        DecisionWriter {
            config,
            receiver: Mutex::new(Some(receiver)),
            file: Mutex::new(Some(file)),
            head: Mutex::new(head),
            written: Notify::new(),
        },
    ))
}

/// The last record's sequence number and hash; a torn (unterminated) last line is cut off.
fn recover(file: &mut File, path: &Path) -> std::io::Result<(i64, String)> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        tracing::warn!("{}: cutting off a torn last line", path.display());
        file.set_len(complete as u64)?;
    }
    let head = text[..complete]
        .lines()
        .last()
        .map(|line| {
            serde_json::from_str::<Record>(line)
                .map(|r| (r.seq, r.hash))
                .map_err(|e| std::io::Error::other(format!("{}: last line: {e}", path.display())))
        })
        .transpose()?;
    Ok(head.unwrap_or((0, GENESIS.to_owned())))
}

impl DecisionWriter {
    /// Writes and ships until the process ends.
    pub async fn run(&self) {
        let receiver = self.receiver.lock().expect("not poisoned").take();
        let Some(receiver) = receiver else {
            return;
        };
        match &self.config.ship_to {
            Some((url, token)) => {
                tokio::join!(self.write(receiver), self.ship(url, token.expose()));
            }
            None => self.write(receiver).await,
        }
    }

    async fn write(&self, mut receiver: mpsc::UnboundedReceiver<Decision>) {
        let mut batch = Vec::new();
        while receiver.recv_many(&mut batch, 1000).await > 0 {
            let lines = {
                let mut head = self.head.lock().expect("not poisoned");
                let mut lines = String::new();
                for decision in batch.drain(..) {
                    let record = Record::chained(head.0 + 1, decision, head.1.clone());
                    *head = (record.seq, record.hash.clone());
                    lines.push_str(&serde_json::to_string(&record).expect("records serialise"));
                    lines.push('\n');
                }
                lines
            };
            let file = self.file.lock().expect("not poisoned").take();
            let Some(mut file) = file else { return };
            // Disk writes off the async workers.
            let result = tokio::task::spawn_blocking(move || {
                let result = file
                    .write_all(lines.as_bytes())
                    .and_then(|()| file.sync_data());
                (file, result)
            })
            .await;
            match result {
                Ok((file, result)) => {
                    if let Err(e) = result {
                        tracing::error!("writing the decision log: {e}");
                    }
                    *self.file.lock().expect("not poisoned") = Some(file);
                    crate::metrics::decisions_logged(self.head.lock().expect("not poisoned").0);
                    self.written.notify_one();
                }
                Err(e) => {
                    tracing::error!("the decision log writer failed: {e}");
                    return;
                }
            }
        }
    }

    async fn ship(&self, url: &str, token: &str) {
        let cursor_path = self.config.dir.join(CURSOR_FILE);
        let mut shipped: i64 = std::fs::read_to_string(&cursor_path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a reqwest client with static settings builds");
        let mut backoff = Duration::from_millis(500);
        // Where in the file the records after `shipped` start, so each pass reads only those.
        let mut position = 0;
        loop {
            let pending = match self.unshipped(&mut position, shipped) {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::error!("reading the decision log: {e}");
                    Vec::new()
                }
            };
            let head = self.head.lock().expect("not poisoned").0;
            crate::metrics::decisions_unshipped(head - shipped);
            if pending.is_empty() {
                tokio::select! {
                    () = self.written.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let batch = serde_json::json!({
                "gateway": self.config.gateway_id,
                "events": pending.iter().map(Record::shipped).collect::<Vec<_>>(),
            });
            match post(&client, url, token, &batch).await {
                Ok(through) => {
                    shipped = through.max(shipped);
                    let tmp = cursor_path.with_extension("tmp");
                    if let Err(e) = std::fs::write(&tmp, shipped.to_string())
                        .and_then(|()| std::fs::rename(&tmp, &cursor_path))
                    {
                        tracing::warn!("saving the shipping cursor: {e}");
                    }
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    tracing::warn!("shipping decisions to {url}: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Up to a batch of records after `shipped`, read from `position` on; `position` moves
    /// past the records already shipped.
    fn unshipped(&self, position: &mut u64, shipped: i64) -> std::io::Result<Vec<Record>> {
        let mut file = File::open(self.config.dir.join(LOG_FILE))?;
        file.seek(SeekFrom::Start(*position))?;
        let mut reader = BufReader::new(file);
        let mut records = Vec::new();
        let mut line = String::new();
        while records.len() < SHIP_BATCH {
            line.clear();
            let read = reader.read_line(&mut line)?;
            // The end, or a line still being written: retried on the next pass.
            if read == 0 || !line.ends_with('\n') {
                break;
            }
            let record: Record = serde_json::from_str(&line)
                .map_err(|e| std::io::Error::other(format!("a corrupt record: {e}")))?;
            if record.seq <= shipped {
                *position += read as u64;
            } else {
                records.push(record);
            }
        }
        Ok(records)
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    batch: &Value,
) -> Result<i64, String> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(batch)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    body["accepted_through"]
        .as_i64()
        .ok_or_else(|| format!("no accepted_through in {body}"))
}

/// Checks a log's chain; returns the number of records, or the first line that breaks it.
pub fn verify(path: &Path) -> Result<i64, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut prev = (0, GENESIS.to_owned());
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let record: Record =
            serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if record.seq != prev.0 + 1
            || record.prev_hash != prev.1
            || record.hash != record.expected_hash()
        {
            return Err(format!(
                "line {} (seq {}) breaks the chain",
                i + 1,
                record.seq
            ));
        }
        prev = (record.seq, record.hash);
    }
    Ok(prev.0)
}
