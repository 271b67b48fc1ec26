//! The audit chain's commands over one gateway or several. Each gateway's journal has its own
//! chain, so each is verified on its own (`verify`: one line per gateway), exported to a file
//! of its own (`export --out-dir`: each file checked with `verify-export` against its own
//! head), and reported in a part of its own with its own chain head (`report`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use penwatch_proto::client::{GatewayError, Member};
use penwatch_proto::text::escape_controls;
use penwatch_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Status;

use crate::ctx::Ctx;
use crate::{Failure, report};

/// `verify`: every gateway's chain; exit 1 if any is broken.
pub async fn verify(ctx: &Ctx) -> Result<(), Failure> {
    let answers = ctx
        .each(|mut c| async move {
            Ok(c.verify_audit_chain(pb::VerifyRequest {})
                .await?
                .into_inner())
        })
        .await?;
    if let [(_, r)] = answers.as_slice()
        && !ctx.several()
    {
        ctx.out.verify(r);
        if !r.ok {
            return Err(Failure::Failed(format!(
                "audit chain broken at entry {}: {}",
                r.first_broken, r.problem
            )));
        }
        return Ok(());
    }
    for (gateway, r) in &answers {
        ctx.out.verify_line(gateway, r);
    }
    let broken: Vec<&str> = answers
        .iter()
        .filter(|(_, r)| !r.ok)
        .map(|(g, _)| g.as_str())
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "the audit chain of {} does not verify",
            escape_controls(&broken.join(", "))
        )))
    }
}

/// `export`: to stdout from one gateway, or one file per gateway into `out_dir`.
pub async fn export(
    ctx: &Ctx,
    filter: pb::Filter,
    format: String,
    samples: bool,
    out_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let request = pb::ExportRequest {
        filter: Some(filter),
        format,
        include_samples: samples,
    };
    let Some(dir) = out_dir else {
        let [only] = ctx.fleet.members() else {
            return Err(Failure::Usage(format!(
                "an export carries one audit chain and each of the {} gateways keeps its own: \
                 pass --out-dir DIR to write one file per gateway (check each with `penwatch \
                 verify-export`), or one --gateway",
                ctx.fleet.len()
            )));
        };
        let head = export_to(only, request, &mut std::io::stdout().lock()).await?;
        eprintln!("audit chain head {} ({})", head.0, verdict(head.1));
        return chain_ok(head.1);
    };
    let names = file_names(ctx.fleet.members(), &request.format)?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Usage(format!("--out-dir {}: {e}", dir.display())))?;
    let mut broken = Vec::new();
    for (member, name) in ctx.fleet.members().iter().zip(names) {
        let path = dir.join(name);
        let (head, ok) =
            export_file(member, request.clone(), &path)
                .await
                .map_err(|e| match e {
                    Exported::Gateway(status) => ctx.failed(GatewayError {
                        gateway: member.gateway.clone(),
                        status,
                    }),
                    Exported::Io(e) => Failure::Failed(format!("{}: {e}", path.display())),
                })?;
        eprintln!(
            "{}: {} audit chain head {head} ({})",
            escape_controls(&member.gateway),
            path.display(),
            verdict(ok)
        );
        if !ok {
            broken.push(member.gateway.as_str());
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "the audit chain of {} did not verify: run `penwatch verify`",
            escape_controls(&broken.join(", "))
        )))
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "verified" } else { "BROKEN" }
}

fn chain_ok(ok: bool) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Failed(
            "the audit chain did not verify: run `penwatch verify`".into(),
        ))
    }
}

/// Why an export to a file stopped.
enum Exported {
    Gateway(Status),
    Io(std::io::Error),
}

/// Streams one gateway's export to `sink`; its chain head and whether the chain verified.
async fn export_to(
    member: &Member,
    request: pb::ExportRequest,
    sink: &mut impl Write,
) -> Result<(String, bool), Failure> {
    let mut c = member.client.clone();
    let mut stream = c.export_depth_log(request).await?.into_inner();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        sink.write_all(&chunk.data)?;
        if chunk.last {
            sink.flush()?;
            return Ok((chunk.chain_head, chunk.chain_ok));
        }
    }
    Err(Failure::Unreachable(
        "the export ended before its last chunk".into(),
    ))
}

/// One gateway's export into `path`, written beside it first and renamed once whole, so a
/// file with the final name is always a whole export.
async fn export_file(
    member: &Member,
    request: pb::ExportRequest,
    path: &Path,
) -> Result<(String, bool), Exported> {
    let partial = path.with_extension("partial");
    let result = async {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&partial).map_err(Exported::Io)?);
        let mut c = member.client.clone();
        let mut stream = c
            .export_depth_log(request)
            .await
            .map_err(Exported::Gateway)?
            .into_inner();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(Exported::Gateway)?;
            file.write_all(&chunk.data).map_err(Exported::Io)?;
            if chunk.last {
                file.flush().map_err(Exported::Io)?;
                return Ok((chunk.chain_head, chunk.chain_ok));
            }
        }
        Err(Exported::Gateway(Status::unavailable(
            "the export ended before its last chunk",
        )))
    }
    .await;
    match result {
        Ok(head) => {
            std::fs::rename(&partial, path).map_err(Exported::Io)?;
            Ok(head)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// One file name per gateway, from its address: `http://gw-1:50051` exports to
/// `gw-1_50051.jsonl`.
fn file_names(members: &[Member], format: &str) -> Result<Vec<String>, Failure> {
    let names: Vec<String> = members
        .iter()
        .map(|m| file_name(&m.gateway, format))
        .collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(Failure::Usage(format!(
                "two gateways would export to the same file {name}: give their addresses as \
                 distinct host:port"
            )));
        }
    }
    Ok(names)
}

fn file_name(gateway: &str, format: &str) -> String {
    let address = gateway
        .split_once("://")
        .map_or(gateway, |(_, rest)| rest)
        .trim_end_matches('/');
    let stem: String = address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stem}.{format}")
}

/// `report`: one page, with a part per gateway when there are several.
pub async fn report(ctx: &Ctx, clinic: &str, from: i64, until: i64) -> Result<(), Failure> {
    if until <= from {
        return Err(Failure::Usage("--until must be after --from".into()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut parts = Vec::new();
    for member in ctx.fleet.members() {
        let mut c = member.client.clone();
        let r = report::gather(&mut c, clinic, from, until, now)
            .await
            .map_err(|status| {
                ctx.failed(GatewayError {
                    gateway: member.gateway.clone(),
                    status,
                })
            })?;
        parts.push((member.gateway.clone(), r));
    }
    let page = match parts.as_slice() {
        [(_, only)] if !ctx.several() => report::html::render(only),
        _ => report::html::render_fleet(&parts),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(page.as_bytes())?;
    stdout.flush()?;
    let broken: Vec<String> = parts
        .iter()
        .filter(|(_, r)| !r.verification.ok)
        .map(|(gateway, r)| {
            let v = &r.verification;
            let whose = if ctx.several() {
                format!("{gateway}: ")
            } else {
                String::new()
            };
            format!(
                "{whose}audit chain broken at entry {}: {}",
                v.first_broken, v.problem
            )
        })
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(
            escape_controls(&broken.join("; ")).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gateway_exports_to_a_file_named_after_its_address() {
        assert_eq!(
            file_name("http://127.0.0.1:50051", "jsonl"),
            "127.0.0.1_50051.jsonl"
        );
        assert_eq!(
            file_name("https://gw-1.example:443/", "csv"),
            "gw-1.example_443.csv"
        );
    }
}
