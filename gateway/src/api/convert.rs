//! Journal records to API messages, with operator ids as the caller may see them.

use std::collections::BTreeSet;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1 as pb;
use tonic::Status;

use super::auth::Caller;
use crate::cartridges::Cartridge;
use crate::decode::Reading;
use crate::fleet::Device;
use crate::journal::queries::{
    Cursor, StoredAmendment, StoredSession, StoredViolation, TimelinePoint,
};
use crate::sessions::{Evidence, Excursion, Session, Verdict};

/// What the fleet view adds to a [`Device`]: its open session and cartridge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceExtra {
    /// The open session these figures belong to.
    pub session_id: String,
    /// Strokes of that session so far.
    pub session_strokes: u64,
    /// The session exceeded.
    pub exceeded: bool,
    /// Wear of the inserted cartridge, % (0 when unknown).
    pub cartridge_wear_pct: f64,
    /// Device time of the session's first sample, Unix ms.
    pub started_ms: i64,
    /// Most restrictive permitted depth while treating so far, mm, and the rule that set it.
    pub permitted: Option<(f64, String)>,
    /// Zones treated so far (short names).
    pub zones: BTreeSet<String>,
    /// The worst excursion so far: its peak, the limit it broke and that limit's rule.
    pub worst: Option<Peak>,
}

/// A session's deepest excursion beyond its own limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peak {
    /// Deepest depth of the excursion, mm.
    pub depth_mm: f64,
    /// The permitted depth it broke, mm.
    pub limit_mm: f64,
    /// The rule that set that limit.
    pub rule: String,
}

impl DeviceExtra {
    /// The figures of a session as folded so far.
    pub fn of_session(s: &Session) -> Self {
        DeviceExtra {
            session_id: s.session_id.clone(),
            session_strokes: s.strokes,
            exceeded: s.exceeded(),
            cartridge_wear_pct: 0.0,
            started_ms: s.started_ms,
            permitted: s.permitted_mm.zip(s.binding.clone()),
            zones: s.zones.clone(),
            worst: s.violation.as_ref().map(|e| Peak {
                depth_mm: e.worst.peak_depth_mm,
                limit_mm: e.worst.limit_mm,
                rule: e.worst.binding.clone(),
            }),
        }
    }

    /// Folds a committed sample of the session in, as [`Session`] does: the session's start,
    /// its most restrictive limit while treating, its zones, and its worst excursion.
    pub fn observe(&mut self, r: &Reading, v: &Verdict) {
        self.session_strokes = self.session_strokes.max(r.session_strokes);
        self.exceeded |= v.exceeded;
        if self.started_ms == 0 || r.timestamp_ms < self.started_ms {
            self.started_ms = r.timestamp_ms;
        }
        if let Some(z) = r.zone.map(|z| z.short_name())
            && !self.zones.contains(z)
        {
            self.zones.insert(z.to_owned());
        }
        if r.depth_mm > 0.0
            && self
                .permitted
                .as_ref()
                .is_none_or(|(p, _)| v.permitted_mm < *p)
        {
            self.permitted = Some((v.permitted_mm, v.binding.clone()));
        }
        let excess = r.depth_mm - v.permitted_mm;
        if v.exceeded
            && self
                .worst
                .as_ref()
                .is_none_or(|w| excess > w.depth_mm - w.limit_mm)
        {
            self.worst = Some(Peak {
                depth_mm: r.depth_mm,
                limit_mm: v.permitted_mm,
                rule: v.binding.clone(),
            });
        }
    }
}

/// A pen's state as the fleet view shows it.
pub fn device_state(d: &Device, extra: Option<&DeviceExtra>, caller: &Caller) -> pb::DeviceState {
    let extra = extra.filter(|e| !d.session_id.is_empty() && e.session_id == d.session_id);
    pb::DeviceState {
        device_id: d.device_id.clone(),
        clinic_id: d.clinic_id.clone(),
        device_class: d.device_class.clone(),
        model: d.model.clone(),
        firmware: d.firmware.clone(),
        status: match d.online {
            Some(true) => "online",
            Some(false) => "offline",
            None => "unknown",
        }
        .to_owned(),
        status_ms: d.status_ms,
        last_seen_ms: d.last_seen_ms,
        battery_pct: d.battery_pct,
        session_id: d.session_id.clone(),
        operator_id: caller.operator(&d.clinic_id, &d.operator_id),
        cartridge_id: d.cartridge_id.clone(),
        depth_mm: d.depth_mm,
        permitted_mm: d.permitted_mm,
        session_strokes: extra.map_or(0, |e| e.session_strokes),
        cartridge_wear_pct: extra.map_or(0.0, |e| e.cartridge_wear_pct),
        registered: d.registered,
        class_mismatch: d.class_mismatch,
        clock_offset_ms: d.clock_offset_ms,
        exceeded: extra.is_some_and(|e| e.exceeded),
        session_started_ms: extra.map_or(0, |e| e.started_ms),
        session_permitted_mm: extra
            .and_then(|e| e.permitted.as_ref())
            .map_or(0.0, |(mm, _)| *mm),
        session_rule: extra
            .and_then(|e| e.permitted.as_ref())
            .map_or_else(String::new, |(_, rule)| rule.clone()),
        session_zones: extra.map_or_else(Vec::new, |e| e.zones.iter().cloned().collect()),
        session_peak_mm: extra
            .and_then(|e| e.worst.as_ref())
            .map_or(0.0, |w| w.depth_mm),
        session_peak_limit_mm: extra
            .and_then(|e| e.worst.as_ref())
            .map_or(0.0, |w| w.limit_mm),
        session_peak_rule: extra
            .and_then(|e| e.worst.as_ref())
            .map_or_else(String::new, |w| w.rule.clone()),
        conflicts: d.conflicts,
        seq_resets: d.seq_resets,
        last_anomaly_ms: d.last_anomaly_ms,
    }
}

/// A reading as the wire message it came from.
pub fn telemetry(r: &Reading, caller: &Caller) -> pb::Telemetry {
    pb::Telemetry {
        device_id: r.device_id.clone(),
        clinic_id: r.clinic_id.clone(),
        device_class: r.claimed_class.into(),
        model: r.model.clone(),
        firmware: r.firmware.clone(),
        operator_id: caller.operator(&r.clinic_id, &r.operator_id),
        session_id: r.session_id.clone(),
        cartridge_id: r.cartridge_id.clone(),
        cartridge_model: r.cartridge_model.clone(),
        seq: r.seq,
        timestamp_ms: r.timestamp_ms,
        event: r.event.into(),
        depth_mm: r.depth_mm,
        session_strokes: r.session_strokes,
        cartridge_strokes: r.cartridge_strokes,
        speed_hz: r.speed_hz,
        battery_pct: r.battery_pct,
        zone: r.zone.map_or(pb::Zone::Unspecified, |z| z).into(),
    }
}

/// A judged sample.
pub fn judged_sample(
    r: &Reading,
    v: &Verdict,
    received_ms: i64,
    caller: &Caller,
) -> pb::JudgedSample {
    pb::JudgedSample {
        telemetry: Some(telemetry(r, caller)),
        permitted_mm: v.permitted_mm,
        binding_rule: v.binding.clone(),
        exceeded: v.exceeded,
        unknown_operator: v.unknown_operator,
        policy_version: v.policy_version.clone(),
        received_ms,
        device_class: v.device_class.clone(),
    }
}

/// Violation evidence: the worst excursion and the others.
pub fn evidence(e: &Evidence) -> pb::Evidence {
    let w = &e.worst;
    pb::Evidence {
        limit_mm: w.limit_mm,
        binding_rule: w.binding.clone(),
        peak_depth_mm: w.peak_depth_mm,
        first_above_ms: w.first_above_ms,
        last_above_ms: w.last_above_ms,
        strokes_above: w.strokes_above,
        samples_above: w.samples_above,
        policy_version: w.policy_version.clone(),
        excess_mm: w.excess_mm,
        other_excursions: e.others.iter().map(excursion).collect(),
        unlisted_excursions: e.unlisted,
    }
}

/// One excursion.
pub fn excursion(x: &Excursion) -> pb::Excursion {
    pb::Excursion {
        limit_mm: x.limit_mm,
        binding_rule: x.binding.clone(),
        peak_depth_mm: x.peak_depth_mm,
        excess_mm: x.excess_mm,
        first_above_ms: x.first_above_ms,
        last_above_ms: x.last_above_ms,
        strokes_above: x.strokes_above,
        samples_above: x.samples_above,
        policy_version: x.policy_version.clone(),
    }
}

/// A session record.
pub fn session(s: &StoredSession, caller: &Caller) -> pb::Session {
    let mut out = live_session(&s.session, caller);
    out.state = if s.open { "open" } else { "closed" }.to_owned();
    out.close_reason = s.close_reason.clone().unwrap_or_default();
    out.samples_digest = s.samples_digest.clone().unwrap_or_default();
    out.amendments = s.amendments;
    out.exceeded_by_amendment = s.exceeded_by_amendment;
    out
}

/// An amendment of a closed session.
pub fn amendment(a: &StoredAmendment) -> pb::Amendment {
    let x = &a.amendment;
    pb::Amendment {
        number: u32::try_from(x.number).unwrap_or(u32::MAX),
        reason: x.reason.clone(),
        amends_audit_seq: x.amends,
        audit_seq: a.audit_seq,
        committed_ms: x.committed_ms,
        messages: x.messages,
        first_seq: x.first_seq,
        last_seq: x.last_seq,
        samples_digest: x.samples_digest.clone(),
        last_ms: x.last_ms,
        strokes: x.strokes,
        max_depth_mm: x.max_depth_mm,
        exceeded: x.exceeded,
        ended: x.ended,
        evidence: x.violation.as_ref().map(evidence),
        new_violation: x.new_violation,
        violation_changed: x.violation_changed,
    }
}

/// A session's current fold (state "open" unless set by the caller).
pub fn live_session(s: &Session, caller: &Caller) -> pb::Session {
    pb::Session {
        session_id: s.session_id.clone(),
        device_id: s.device_id.clone(),
        clinic_id: s.clinic_id.clone(),
        operator_id: caller.operator(&s.clinic_id, &s.operator_id),
        device_class: s.device_class.clone(),
        cartridge_id: s.cartridge_id.clone(),
        cartridge_model: s.cartridge_model.clone(),
        started_ms: s.started_ms,
        last_ms: s.last_ms,
        samples: s.samples,
        strokes: s.strokes,
        max_depth_mm: s.max_depth_mm,
        permitted_mm: s.permitted_mm.unwrap_or_default(),
        binding_rule: s.binding.clone().unwrap_or_default(),
        zones: s.zones.iter().cloned().collect(),
        exceeded: s.exceeded(),
        unknown_operator: s.unknown_operator,
        unregistered_device: s.unregistered_device,
        state: "open".to_owned(),
        close_reason: String::new(),
        evidence: s.violation.as_ref().map(evidence),
        samples_digest: String::new(),
        conflicting_messages: s.conflicting,
        amendments: 0,
        exceeded_by_amendment: false,
    }
}

/// A stored violation.
pub fn violation(v: &StoredViolation, caller: &Caller) -> pb::Violation {
    pb::Violation {
        session_id: v.session_id.clone(),
        device_id: v.device_id.clone(),
        clinic_id: v.clinic_id.clone(),
        operator_id: caller.operator(&v.clinic_id, &v.operator_id),
        device_class: v.device_class.clone(),
        evidence: Some(evidence(&v.evidence)),
        r#final: v.final_,
        committed_ms: 0,
        unknown_operator: v.unknown_operator,
        conflicting_messages: v.conflicting,
        amendment: u32::try_from(v.amendment).unwrap_or(u32::MAX),
        session_amendments: v.session_amendments,
        session_started_ms: v.started_ms,
    }
}

/// A live violation from the committer (`None` if the session has no evidence); `amendment`
/// is the amendment that raised or grew it (0: none).
pub fn live_violation(
    s: &Session,
    final_: bool,
    committed_ms: i64,
    amendment: u64,
    caller: &Caller,
) -> Option<pb::Violation> {
    Some(pb::Violation {
        session_id: s.session_id.clone(),
        device_id: s.device_id.clone(),
        clinic_id: s.clinic_id.clone(),
        operator_id: caller.operator(&s.clinic_id, &s.operator_id),
        device_class: s.device_class.clone(),
        evidence: Some(evidence(s.violation.as_ref()?)),
        r#final: final_,
        committed_ms,
        unknown_operator: s.unknown_operator,
        conflicting_messages: s.conflicting,
        amendment: u32::try_from(amendment).unwrap_or(u32::MAX),
        session_amendments: u32::try_from(amendment).unwrap_or(u32::MAX),
        session_started_ms: s.started_ms,
    })
}

/// A timeline point.
pub fn depth_point(p: TimelinePoint) -> pb::DepthPoint {
    pb::DepthPoint {
        timestamp_ms: p.ts_ms,
        depth_mm: p.depth_mm,
        permitted_mm: p.permitted_mm,
        session_strokes: p.session_strokes,
        zone: p.zone.unwrap_or_default(),
        exceeded: p.exceeded,
    }
}

/// A cartridge, with the clinic and firmware of the pen that used it last.
pub fn cartridge(c: &Cartridge, last: Option<&Device>) -> pb::Cartridge {
    let wear = c.wear_pct().unwrap_or_default();
    pb::Cartridge {
        cartridge_id: c.id.clone(),
        model: c.model.clone(),
        strokes: c.strokes,
        rated_strokes: c.rated_strokes.unwrap_or_default(),
        wear_pct: wear,
        wear: c.wear.as_str().to_owned(),
        reused: c.reused(),
        sessions: u32::try_from(c.sessions.len()).unwrap_or(u32::MAX),
        last_device_id: last.map(|d| d.device_id.clone()).unwrap_or_default(),
        clinic_id: last.map(|d| d.clinic_id.clone()).unwrap_or_default(),
        firmware: last.map(|d| d.firmware.clone()).unwrap_or_default(),
    }
}

/// An opaque page token for the position after `c`.
pub fn page_token(c: &Cursor) -> String {
    hex::encode(format!(
        "{}\n{}\n{}",
        c.started_ms, c.device_id, c.session_id
    ))
}

/// The position a page token stands for (`None` for "").
pub fn parse_page_token(token: &str) -> Result<Option<Cursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument("page_token is not one this gateway issued");
    if token.len() > super::limits::MAX_PAGE_TOKEN_BYTES {
        return Err(bad());
    }
    let text = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    let started_ms = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let device_id = parts.next().ok_or_else(bad)?.to_owned();
    let session_id = parts.next().ok_or_else(bad)?.to_owned();
    Ok(Some(Cursor {
        started_ms,
        device_id,
        session_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_forgeries() {
        let c = Cursor {
            started_ms: 1_790_000_000_000,
            device_id: "pen-1".into(),
            session_id: "s-1".into(),
        };
        assert_eq!(parse_page_token(&page_token(&c)).expect("valid"), Some(c));
        assert_eq!(parse_page_token("").expect("empty"), None);
        for bad in ["zz", "00", &hex::encode("x\ny")] {
            assert_eq!(
                parse_page_token(bad).err().map(|s| s.code()),
                Some(tonic::Code::InvalidArgument)
            );
        }
    }
}
