//! The commands that talk to the daemon.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

use super::{print_verdict, read_checkpoints, time, Command, Daemon};
use anomalyd::api::{
    AnomalyDetectedArgs, AnomalyRepeatedArgs, ChainHead, ChainReport, ExplainNeighbour,
    ExplainReply, IncidentRow, RecordRow, ScoreReply, ScoredNeighbour,
};

/// How long `replay` waits before retrying a Submit the daemon answered Busy.
const BUSY_BACKOFF: Duration = Duration::from_millis(50);

pub async fn run(daemon: &Daemon, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Status => status(daemon).await?,
        Command::Stats => stats(daemon).await?,
        Command::Anomalies {
            since,
            lines,
            follow,
        } => {
            let since = super::since_usec(since.as_deref(), daemon.utc)?;
            let filter = HashMap::from([("verdict", Value::from("anomaly"))]);
            // Subscribe before listing, so nothing detected in between is missed.
            let signals = if follow {
                Some(anomaly_signals(daemon).await?)
            } else {
                None
            };
            let backlog = daemon.last_records(since, lines, filter).await?;
            let mut last_seq = 0;
            for row in &backlog {
                daemon.print_row(row);
                last_seq = row.seq;
            }
            if let Some(signals) = signals {
                follow_anomalies(daemon, signals, last_seq).await?;
            }
        }
        Command::Watch => {
            let signals = anomaly_signals(daemon).await?;
            eprintln!(
                "watching {} on the {} bus for anomalies (Ctrl-C to stop)",
                daemon.name, daemon.target
            );
            follow_anomalies(daemon, signals, 0).await?;
        }
        Command::Events {
            since,
            lines,
            verdict,
            source,
            kind,
            grep,
            incident,
        } => {
            let since = super::since_usec(since.as_deref(), daemon.utc)?;
            let mut filter: HashMap<&str, Value<'static>> = HashMap::new();
            for (key, value) in [
                ("verdict", verdict),
                ("source", source),
                ("kind", kind),
                ("contains", grep),
            ] {
                if let Some(v) = value {
                    filter.insert(key, Value::from(v));
                }
            }
            if let Some(seq) = incident {
                filter.insert("incident", Value::U64(seq));
            }
            for row in daemon.last_records(since, lines, filter).await? {
                daemon.print_row(&row);
            }
        }
        Command::Incidents { since, lines } => {
            let since = super::since_usec(since.as_deref(), daemon.utc)?;
            let limit = i32::try_from(lines.clamp(1, 1000)).unwrap_or(1000);
            let rows: Vec<IncidentRow> = daemon.call("ListIncidents", &(since, limit)).await?;
            for IncidentRow {
                first_seq: first,
                first_usec,
                last_seq: last,
                last_usec,
                anomalies: events,
                source,
                text,
                max_score: score,
            } in rows
            {
                if daemon.json {
                    println!(
                        "{}",
                        serde_json::json!({"incident": first, "first_usec": first_usec,
                            "last_seq": last, "last_usec": last_usec, "events": events,
                            "source": source, "max_score": score.is_finite().then_some(score),
                            "text": text})
                    );
                } else {
                    let repeats = match events {
                        1 => "once".to_owned(),
                        n => format!(
                            "{n} times, last #{last} {}",
                            time::format_usec(last_usec, daemon.utc)
                        ),
                    };
                    println!(
                        "{}  #{first:<7} {score:7.4}  [{source}] {text}  ({repeats})",
                        time::format_usec(first_usec, daemon.utc)
                    );
                }
            }
        }
        Command::Show { seq } => show(daemon, seq).await?,
        Command::Explain { seq } => explain(daemon, seq).await?,
        Command::Score { text } => score(daemon, &text).await?,
        Command::Benign { seq, note } => {
            let mark: u64 = daemon.call("MarkBenign", &(seq, note.as_str())).await?;
            if daemon.json {
                println!("{}", serde_json::json!({"seq": seq, "benign_record": mark}));
            } else {
                println!("#{seq} marked benign as record #{mark}");
            }
        }
        Command::Retrain => {
            let () = daemon.call("Retrain", &()).await?;
            if !daemon.json {
                println!(
                    "retraining in the background; IndexSwaps in `anomalyctl stats` counts swaps"
                );
            }
        }
        Command::Replay { file, source, rate } => replay(daemon, &file, &source, rate).await?,
        Command::Head { db: None } => {
            let ChainHead { seq, hash } = daemon.call("Head", &()).await?;
            anyhow::ensure!(seq > 0, "the daemon's audit log holds no records");
            println!("{seq}:{hash}");
        }
        Command::Verify {
            db: None,
            expect_head,
            checkpoints,
            journal,
            ..
        } => return verify(daemon, expect_head, &checkpoints, journal).await,
        Command::Verify { db: Some(_), .. }
        | Command::Head { db: Some(_) }
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("offline commands returned before connecting")
        }
    }
    Ok(0)
}

/// `AnomalyDetected` (a new incident) and `AnomalyRepeated` (a repeat of an open one) on one
/// stream, in the order the bus delivers them.
async fn anomaly_signals(
    daemon: &Daemon,
) -> anyhow::Result<impl futures_util::Stream<Item = zbus::Message> + Unpin + '_> {
    let detected = daemon.proxy.receive_signal("AnomalyDetected").await?;
    let repeated = daemon.proxy.receive_signal("AnomalyRepeated").await?;
    Ok(futures_util::stream::select(detected, repeated))
}

async fn follow_anomalies(
    daemon: &Daemon,
    mut signals: impl futures_util::Stream<Item = zbus::Message> + Unpin,
    after_seq: u64,
) -> anyhow::Result<()> {
    while let Some(msg) = signals.next().await {
        let repeated = msg
            .header()
            .member()
            .is_some_and(|m| m.as_str() == "AnomalyRepeated");
        // Either signal prints as the row its record is, with what it says in the verdict.
        let row = if repeated {
            let AnomalyRepeatedArgs {
                seq,
                usec,
                source,
                text,
                score,
                incident,
                repeat,
            } = msg.body().deserialize()?;
            RecordRow {
                seq,
                usec,
                kind: "event".into(),
                source,
                verdict: format!("repeat {repeat} of #{incident}"),
                score,
                text,
            }
        } else {
            let AnomalyDetectedArgs {
                seq,
                usec,
                source,
                text,
                score,
            } = msg.body().deserialize()?;
            RecordRow {
                seq,
                usec,
                kind: "event".into(),
                source,
                verdict: "anomaly".into(),
                score,
                text,
            }
        };
        if row.seq <= after_seq {
            continue;
        }
        daemon.print_row(&row);
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    anyhow::bail!("the bus connection closed")
}

fn text_of(value: &OwnedValue) -> String {
    anomalyd::render::value_text(value)
}

async fn stats(daemon: &Daemon) -> anyhow::Result<()> {
    let stats: HashMap<String, OwnedValue> = daemon.call("Stats", &()).await?;
    let count = |k: &str| {
        stats
            .get(k)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    };
    let (hits, misses) = (count("EmbedCacheHits"), count("EmbedCacheMisses"));
    if daemon.json {
        let object: serde_json::Map<String, serde_json::Value> = stats
            .iter()
            .map(|(k, v)| {
                let value = u64::try_from(v)
                    .map(serde_json::Value::from)
                    .or_else(|_| u32::try_from(v).map(serde_json::Value::from))
                    .unwrap_or_else(|_| serde_json::Value::from(text_of(v)));
                (k.clone(), value)
            })
            .collect();
        println!("{}", serde_json::Value::Object(object));
        return Ok(());
    }
    let mut keys: Vec<_> = stats.keys().cloned().collect();
    keys.sort();
    for k in keys {
        println!("{k:>22}: {}", text_of(&stats[&k]));
    }
    if hits + misses > 0 {
        let rate = 100.0 * hits as f64 / (hits + misses) as f64;
        println!("{:>22}: {rate:.1}%", "EmbedCacheHitRate");
    }
    Ok(())
}

async fn status(daemon: &Daemon) -> anyhow::Result<()> {
    let properties = zbus::fdo::PropertiesProxy::builder(daemon.proxy.connection())
        .destination(daemon.name.clone())?
        .path(anomalyd::api::OBJECT_PATH)?
        .build()
        .await?;
    let interface = zbus::names::InterfaceName::from_static_str(anomalyd::api::INTERFACE)?;
    let props = properties
        .get_all(interface)
        .await
        .with_context(|| format!("GetAll on {} ({} bus)", daemon.name, daemon.target))?;
    let stats: HashMap<String, OwnedValue> = daemon.call("Stats", &()).await?;
    let ChainHead {
        seq: head_seq,
        hash: head_hash,
    } = daemon.call("Head", &()).await?;
    let recent = daemon
        .last_records(0, 5, HashMap::from([("verdict", Value::from("anomaly"))]))
        .await?;
    let prop = |k: &str| props.get(k).map(text_of).unwrap_or_default();
    let stat = |k: &str| stats.get(k).map(text_of).unwrap_or_default();
    if daemon.json {
        let mut object = serde_json::Map::new();
        for (k, v) in &props {
            object.insert(k.clone(), serde_json::Value::from(text_of(v)));
        }
        object.insert("HeadSeq".into(), head_seq.into());
        object.insert("HeadHash".into(), head_hash.into());
        object.insert("BaselineSize".into(), stat("BaselineSize").into());
        println!("{}", serde_json::Value::Object(object));
        return Ok(());
    }
    let started = stats
        .get("StartedUsec")
        .and_then(|v| u64::try_from(v).ok())
        .map(|u| time::format_usec(u, daemon.utc))
        .unwrap_or_default();
    println!(
        "● anomalyd {} as {} on the {} bus, since {started}",
        prop("Version"),
        daemon.name,
        daemon.target
    );
    println!("      Embedder: {}", prop("EmbedderBackend"));
    println!(
        "         Index: {} (baseline {} texts, {} swaps)",
        stat("IndexDescription"),
        stat("BaselineSize"),
        stat("IndexSwaps")
    );
    println!(
        "        Events: {} received, {} anomalies, {} dropped",
        prop("EventsTotal"),
        prop("AnomaliesTotal"),
        prop("DroppedTotal")
    );
    println!("     Threshold: {}", prop("Threshold"));
    let node = prop("NumaNode");
    println!(
        "          CPUs: {} (NUMA node {})",
        prop("CpuSet"),
        if node == "-1" {
            "not bound".into()
        } else {
            node
        }
    );
    println!(
        "          Head: {}",
        if head_seq == 0 {
            "no records".to_owned()
        } else {
            format!("{head_seq}:{head_hash}")
        }
    );
    if recent.is_empty() {
        println!("\nNo anomalies recorded.");
    } else {
        println!("\nRecent anomalies:");
        for row in &recent {
            daemon.print_row(row);
        }
    }
    Ok(())
}

async fn show(daemon: &Daemon, seq: u64) -> anyhow::Result<()> {
    let record: HashMap<String, OwnedValue> = daemon.call("GetEvent", &(seq,)).await?;
    let text = |k: &str| record.get(k).map(text_of).unwrap_or_default();
    let number = |k: &str| record.get(k).and_then(|v| f64::try_from(v).ok());
    let usec = record
        .get("Usec")
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    let fields: serde_json::Value =
        serde_json::from_str(&text("Fields")).unwrap_or(serde_json::Value::Null);
    let neighbours: Vec<(u64, f64)> = record
        .get("Neighbours")
        .and_then(|v| Vec::<(u64, f64)>::try_from(v.try_clone().ok()?).ok())
        .unwrap_or_default();
    if daemon.json {
        println!(
            "{}",
            serde_json::json!({"seq": seq, "usec": usec, "time": time::format_usec(usec, daemon.utc),
                "kind": text("Kind"), "source": text("Source"), "text": text("Text"),
                "verdict": text("Verdict"), "score": number("Score"), "threshold": number("Threshold"),
                "fields": fields, "neighbours": neighbours, "model": text("Model"),
                "prev_hash": text("PrevHash"), "hash": text("Hash")})
        );
        return Ok(());
    }
    println!(
        "#{seq} {} at {}",
        text("Kind"),
        time::format_usec(usec, daemon.utc)
    );
    println!("      Text: {}", text("Text"));
    println!("    Source: {}", text("Source"));
    let verdict = text("Verdict");
    match (number("Score"), number("Threshold")) {
        (Some(s), Some(t)) => println!("   Verdict: {verdict} (score {s:.4}, threshold {t:.4})"),
        (Some(s), None) => println!("   Verdict: {verdict} (score {s:.4})"),
        _ => println!("   Verdict: {verdict}"),
    }
    println!("     Model: {}", text("Model"));
    if let serde_json::Value::Object(map) = &fields {
        println!("    Fields:");
        for (k, v) in map {
            println!("      {k} = {v}");
        }
    }
    if !neighbours.is_empty() {
        let list: Vec<String> = neighbours
            .iter()
            .map(|(id, d)| format!("{id} ({d:.4})"))
            .collect();
        println!(
            "Neighbours: {} (`anomalyctl explain {seq}` for their texts)",
            list.join(", ")
        );
    }
    println!("  PrevHash: {}", text("PrevHash"));
    println!("      Hash: {}", text("Hash"));
    Ok(())
}

async fn explain(daemon: &Daemon, seq: u64) -> anyhow::Result<()> {
    let ExplainReply {
        text,
        verdict,
        score,
        threshold,
        neighbours,
    } = daemon.call("Explain", &(seq,)).await?;
    // What the verdict was judged against, and its incident, are in the record's fields.
    let record: HashMap<String, OwnedValue> = daemon.call("GetEvent", &(seq,)).await?;
    let fields: serde_json::Map<String, serde_json::Value> = record
        .get("Fields")
        .and_then(|v| <&str>::try_from(v).ok())
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    let number = |k: &str| fields.get(k).and_then(serde_json::Value::as_f64);
    let source_threshold = number("source_threshold");
    let slots = fields.get("variable_slots").cloned();
    let follows = fields.get("follows").cloned();
    let repeated = fields.get("repeated").cloned();
    let superuser = fields.get("superuser").cloned();
    let incident = fields.get("incident").and_then(serde_json::Value::as_u64);
    let repeat = fields
        .get("repeat")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if daemon.json {
        let neighbours: Vec<_> = neighbours
            .iter()
            .map(|n| {
                serde_json::json!({"id": n.id, "distance": n.distance, "text": n.text,
                    "count": n.count, "first_seq": n.first_seq})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"seq": seq, "text": text, "verdict": verdict,
                "score": score.is_finite().then_some(score),
                "threshold": threshold.is_finite().then_some(threshold),
                "source_threshold": source_threshold, "variable_slots": slots,
                "follows": follows, "repeated": repeated, "superuser": superuser,
                "incident": incident, "repeat": incident.map(|_| repeat),
                "neighbours": neighbours})
        );
        return Ok(());
    }
    println!("#{seq} {verdict}: {text}");
    if score.is_finite() {
        println!("score {score:.4}{}", judged_against(threshold, &fields));
    }
    match incident {
        Some(first) if repeat > 0 => {
            println!(
                "repeat {repeat} of incident #{first} (`anomalyctl events --incident {first}`)"
            )
        }
        Some(_) => println!("opened an incident (`anomalyctl events --incident {seq}`)"),
        None => {}
    }
    if neighbours.is_empty() {
        println!(
            "no baseline neighbours (the baseline was empty, or the record is not a scored event)"
        );
    } else {
        println!("{:>9} {:>8} {:>8}  TEXT", "DISTANCE", "COUNT", "FIRST");
        for ExplainNeighbour {
            distance,
            text,
            count,
            first_seq,
            ..
        } in &neighbours
        {
            println!("{distance:>9.4} {count:>8} {first_seq:>8}  {text}");
        }
    }
    Ok(())
}

/// What a scored record was compared with, from its `threshold` and fields: the source's
/// threshold, raised for a new value in variable slots, or the floor for a failure in context.
fn judged_against(threshold: f64, fields: &serde_json::Map<String, serde_json::Value>) -> String {
    if !threshold.is_finite() {
        return String::new();
    }
    let Some(source) = fields
        .get("source_threshold")
        .and_then(serde_json::Value::as_f64)
    else {
        return format!(" against the source's threshold {threshold:.4}");
    };
    if let Some(leader) = fields.get("follows").and_then(serde_json::Value::as_str) {
        return format!(
            " against the floor {threshold:.4}, not the source's threshold {source:.4}: a \
             failure soon after the anomaly {leader:?}"
        );
    }
    if let Some(repeated) = fields.get("repeated") {
        return format!(
            " against the floor {threshold:.4}, not the source's threshold {source:.4}: a \
             failure seen {} times within {} s",
            repeated["count"], repeated["within_s"]
        );
    }
    if let Some(value) = fields.get("superuser").and_then(serde_json::Value::as_str) {
        return format!(
            " against the floor {threshold:.4}, not the source's threshold {source:.4}: a new \
             value naming the superuser ({value:?}) where the baseline holds others"
        );
    }
    match fields.get("variable_slots") {
        Some(slots) => format!(
            " against {threshold:.4}: the source's threshold {source:.4}, raised because the \
             text is a new value in words {} (counted from 0, a dot leader splitting a word) \
             of a template where the baseline holds {} or more values",
            slots["positions"], slots["values"]
        ),
        None => format!(" against the source's threshold {threshold:.4}"),
    }
}

async fn score(daemon: &Daemon, text: &str) -> anyhow::Result<()> {
    let ScoreReply {
        score,
        verdict,
        threshold,
        neighbours,
    } = daemon.call("Score", &(text,)).await?;
    if daemon.json {
        let neighbours: Vec<_> = neighbours
            .iter()
            .map(|n| {
                serde_json::json!({"id": n.id, "distance": n.distance, "text": n.text,
                    "count": n.count})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"text": text, "score": score, "verdict": verdict,
                "threshold": threshold, "neighbours": neighbours})
        );
        return Ok(());
    }
    println!("{verdict}: score {score:.4} (threshold {threshold:.4}), not recorded");
    if !neighbours.is_empty() {
        println!("{:>9} {:>8}  TEXT", "DISTANCE", "COUNT");
        for ScoredNeighbour {
            distance,
            text,
            count,
            ..
        } in &neighbours
        {
            println!("{distance:>9.4} {count:>8}  {text}");
        }
    }
    Ok(())
}

async fn replay(
    daemon: &Daemon,
    file: &std::path::Path,
    source: &str,
    rate: f64,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        rate.is_finite() && rate >= 0.0,
        "--rate {rate}: must be 0 (unlimited) or a positive number of events per second"
    );
    let content =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<(usize, &str)> = content
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut progress = anomalyd::offline::Progress::new("replaying");
    let started = Instant::now();
    let mut busy_retries = 0u64;
    for (done, (number, line)) in lines.iter().enumerate() {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(done as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        loop {
            let submitted: anyhow::Result<()> = daemon.call("Submit", &(source, *line)).await;
            match submitted {
                Ok(()) => break,
                Err(e) if is_busy(&e) => {
                    busy_retries += 1;
                    tokio::time::sleep(BUSY_BACKOFF).await;
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "line {} of {} ({done} lines submitted before it)",
                        number + 1,
                        file.display()
                    )))
                }
            }
        }
        progress.update(done + 1, lines.len());
    }
    let seconds = started.elapsed().as_secs_f64();
    if daemon.json {
        println!(
            "{}",
            serde_json::json!({"file": file, "submitted": lines.len(), "seconds": seconds, "busy_retries": busy_retries})
        );
    } else {
        println!(
            "submitted {} lines from {} in {seconds:.1}s ({busy_retries} retries after Busy)",
            lines.len(),
            file.display()
        );
    }
    Ok(())
}

fn is_busy(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(cause.downcast_ref::<zbus::Error>(),
            Some(zbus::Error::MethodError(name, _, _)) if name.as_str() == "org.anomalyd.Error.Busy")
    })
}

async fn verify(
    daemon: &Daemon,
    expect_head: Vec<anomalyd::audit::Checkpoint>,
    checkpoints: &[std::path::PathBuf],
    journal: bool,
) -> anyhow::Result<u8> {
    // The daemon holds its chain against every head given (older ones too) besides its own
    // checkpoint file.
    let mut expected = expect_head;
    expected.extend(read_checkpoints(checkpoints, journal)?);
    let heads: Vec<ChainHead> = expected
        .iter()
        .map(|c| ChainHead {
            seq: c.seq,
            hash: hex::encode(c.hash),
        })
        .collect();
    let ChainReport {
        ok,
        records,
        head_seq,
        head_hash,
        bad_seq,
        problem,
    }: ChainReport = if heads.is_empty() {
        // The older method, which every daemon version answers.
        daemon.call("VerifyChain", &()).await?
    } else {
        daemon.call("VerifyChainWith", &(heads,)).await?
    };
    let head = (head_seq > 0).then(|| (head_seq, head_hash.clone()));
    let failure = (!ok).then_some((bad_seq, problem));
    Ok(print_verdict(records, head, failure))
}

#[cfg(test)]
mod tests {
    use super::judged_against;

    fn fields(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn explain_says_what_a_score_was_judged_against() {
        assert_eq!(judged_against(f64::NAN, &fields(serde_json::json!({}))), "");
        assert_eq!(
            judged_against(0.25, &fields(serde_json::json!({}))),
            " against the source's threshold 0.2500"
        );
        let slots = judged_against(
            0.4,
            &fields(serde_json::json!({"source_threshold": 0.05,
                "variable_slots": {"positions": [2], "values": 55}})),
        );
        assert!(
            slots.contains("the source's threshold 0.0500, raised"),
            "{slots}"
        );
        assert!(
            slots.contains("words [2]") && slots.contains("55 or more"),
            "{slots}"
        );
        let follows = judged_against(
            0.05,
            &fields(serde_json::json!({"source_threshold": 0.25,
                "follows": "kernel: Out of memory: Killed process <n> (clamd)"})),
        );
        assert_eq!(
            follows,
            " against the floor 0.0500, not the source's threshold 0.2500: a failure soon after \
             the anomaly \"kernel: Out of memory: Killed process <n> (clamd)\""
        );
        let repeated = judged_against(
            0.05,
            &fields(serde_json::json!({"source_threshold": 0.25,
                "repeated": {"count": 3, "within_s": 3600}})),
        );
        assert_eq!(
            repeated,
            " against the floor 0.0500, not the source's threshold 0.2500: a failure seen 3 \
             times within 3600 s"
        );
        let superuser = judged_against(
            0.05,
            &fields(
                serde_json::json!({"source_threshold": 0.25, "superuser": "user=root",
                "variable_slots": {"positions": [3], "values": 4}}),
            ),
        );
        assert_eq!(
            superuser,
            " against the floor 0.0500, not the source's threshold 0.2500: a new value naming \
             the superuser (\"user=root\") where the baseline holds others"
        );
    }
}
