//! The commands that ask the gateways, over one gateway or several (`--gateway a,b,c`).
//!
//! Lists are merged into one, sorted as one gateway sorts them (`Fleet`); what belongs to
//! each gateway's own journal (quarantine, access log, policy, who the token is there) is
//! printed per gateway; the audit chain's commands are in `chains`. A gateway that does not
//! answer fails the command, naming it: a view is never partial without saying so.

use penwatch_proto::client::merge;
use penwatch_proto::v1 as pb;
use tokio_stream::StreamExt;

use crate::ctx::Ctx;
use crate::output::Out;
use crate::{Command, Failure, chains, feed, review};

/// Runs a command that asks the gateways.
pub async fn run(ctx: &Ctx, command: Command) -> Result<(), Failure> {
    let out = &ctx.out;
    let fleet = &ctx.fleet;
    match command {
        Command::Whoami => {
            let answers = ctx
                .each(
                    |mut c| async move { Ok(c.who_am_i(pb::WhoAmIRequest {}).await?.into_inner()) },
                )
                .await?;
            ctx.per_gateway(&answers, Out::whoami);
        }
        Command::Fleet { filter } => {
            let listed = ctx.pens(Some(filter.filter())).await?;
            let out = ctx.holding(&listed);
            out.devices(&merge::devices(
                listed.into_iter().map(|(_, devices)| devices).collect(),
            ));
        }
        Command::Sessions { filter, limit } => {
            let mut sessions = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = fleet
                    .list_sessions(
                        Some(filter.filter()),
                        u32::try_from(limit.min(1000)).unwrap_or(1000),
                        &page_token,
                    )
                    .await
                    .complete()
                    .map_err(|e| ctx.failed(e))?;
                sessions.extend(r.sessions);
                page_token = r.next_page_token;
                if page_token.is_empty() || sessions.len() >= limit {
                    break;
                }
            }
            sessions.truncate(limit);
            ctx.merged_out().await?.sessions(&sessions);
        }
        Command::Session {
            device,
            session,
            points,
        } => {
            let r = fleet
                .get_session(pb::GetSessionRequest {
                    device_id: device,
                    session_id: session,
                    max_points: points,
                })
                .await
                .map_err(|e| ctx.failed(e))?;
            out.session(&r);
        }
        Command::Violations {
            filter,
            follow: true,
            updates,
            ..
        } => {
            let mut stream = fleet
                .watch_violations(Some(filter.filter()))
                .await
                .map_err(|e| ctx.failed(e))?;
            out.follow_header();
            let mut feed = feed::Feed::default();
            while let Some(v) = stream.next().await {
                let v = v.map_err(|e| ctx.failed(e))?;
                if let Some(kind) = feed.classify(&v, updates) {
                    out.violation_line(kind, &v);
                }
            }
            return Err(Failure::Unreachable("the gateway ended the stream".into()));
        }
        Command::Violations { filter, limit, .. } => {
            let r = fleet
                .list_violations(
                    Some(filter.filter()),
                    u32::try_from(limit.min(1000)).unwrap_or(1000),
                    "",
                )
                .await
                .complete()
                .map_err(|e| ctx.failed(e))?;
            ctx.merged_out().await?.violations(&r.violations);
        }
        Command::Cartridges { filter, limit } => {
            let r = fleet
                .list_cartridges(Some(filter.filter()), limit)
                .await
                .complete()
                .map_err(|e| ctx.failed(e))?;
            out.cartridges(&r);
        }
        Command::Operators { filter } => {
            let operators = fleet
                .list_operators(Some(filter.filter()))
                .await
                .complete()
                .map_err(|e| ctx.failed(e))?;
            out.operators(&operators);
        }
        Command::Quarantine { limit, before } => {
            let answers = ctx
                .each(|mut c| async move {
                    let request = pb::ListQuarantineRequest {
                        limit,
                        before_id: before,
                    };
                    Ok(c.list_quarantine(request).await?.into_inner())
                })
                .await?;
            ctx.per_gateway(&answers, Out::quarantine);
        }
        Command::AccessLog { limit, before } => {
            let answers = ctx
                .each(|mut c| async move {
                    let request = pb::ListAccessLogRequest {
                        limit,
                        before_id: before,
                    };
                    Ok(c.list_access_log(request).await?.into_inner())
                })
                .await?;
            ctx.per_gateway(&answers, Out::access_log);
        }
        Command::Policy {
            history: true,
            text,
            ..
        } => {
            let answers = ctx
                .each(|mut c| async move {
                    let request = pb::ListPolicyVersionsRequest {};
                    Ok(c.list_policy_versions(request).await?.into_inner())
                })
                .await?;
            ctx.per_gateway(&answers, |out, r| out.policy_history(&r.versions, text));
        }
        Command::Policy { validate: None, .. } => {
            let answers = ctx
                .each(|mut c| async move {
                    Ok(c.get_policy(pb::GetPolicyRequest {}).await?.into_inner())
                })
                .await?;
            ctx.per_gateway(&answers, Out::policy);
        }
        Command::Policy {
            validate: Some(path),
            ..
        } => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
            let answers = ctx
                .each(|mut c| {
                    let text = text.clone();
                    async move {
                        let request = pb::ValidatePolicyRequest { text };
                        Ok(c.validate_policy(request).await?.into_inner())
                    }
                })
                .await?;
            ctx.per_gateway(&answers, Out::validation);
            if answers.iter().any(|(_, r)| !r.valid) {
                return Err(Failure::Failed(format!("{}: invalid", path.display())));
            }
        }
        Command::Review { command } => review::run(ctx, command).await?,
        Command::Verify => chains::verify(ctx).await?,
        Command::Export {
            filter,
            format,
            samples,
            out_dir,
        } => chains::export(ctx, filter.filter(), format, samples, out_dir).await?,
        Command::Report {
            clinic,
            from,
            until,
        } => chains::report(ctx, &clinic, from, until).await?,
        Command::VerifyExport { file } => crate::verify_offline(&file, out.json())?,
    }
    Ok(())
}
