//! `penwatch review`: sign a clinic's records for a period, list the signatures.

use clap::Subcommand;
use penwatch_proto::v1 as pb;

use super::{Failure, parse_time};
use crate::ctx::Ctx;

/// What `review` does.
#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Sign a clinic's records over a period (reviewer, admin): the signature records your
    /// printed name, the time and its meaning, bound to the audit-chain head, and is chained.
    Sign {
        /// The clinic whose records you sign.
        #[arg(long)]
        clinic: String,
        /// Start of the period (device time, inclusive).
        #[arg(long, value_parser = parse_time)]
        from: i64,
        /// End of the period (device time, exclusive).
        #[arg(long, value_parser = parse_time)]
        until: i64,
        /// What the signature means.
        #[arg(long, value_parser = ["reviewed", "approved", "responsibility"])]
        meaning: String,
        /// Your printed name, as it is to appear on the record.
        #[arg(long)]
        signer: String,
        /// The audit-chain head you reviewed (an export prints it) [default: the head at
        /// signing].
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
    /// Signatures, newest first, with printed name, time, meaning, period and chain head.
    List {
        /// Clinic id (repeat for several) [default: every clinic the token sees].
        #[arg(long = "clinic")]
        clinics: Vec<String>,
        /// Only signatures whose period ends after this time.
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Only signatures whose period starts before this time.
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// Most signatures listed (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// Runs a `review` command. A signature binds one gateway's chain, so it is signed on one
/// gateway, and listed per gateway (each under its address, with the head of its chain).
pub async fn run(ctx: &Ctx, command: ReviewCommand) -> Result<(), Failure> {
    let out = &ctx.out;
    match command {
        ReviewCommand::Sign {
            clinic,
            from,
            until,
            meaning,
            signer,
            head,
        } => {
            if from >= until {
                return Err(Failure::Usage(
                    "--from must be before --until: the period signed is empty".into(),
                ));
            }
            let [member] = ctx.fleet.members() else {
                return Err(Failure::Usage(format!(
                    "a review signature binds one gateway's audit chain and {} gateways were \
                     given: sign on the gateway whose journal holds the clinic's records \
                     (one --gateway), and on each of them if several do",
                    ctx.fleet.len()
                )));
            };
            let r = member
                .client
                .clone()
                .sign_review(pb::SignReviewRequest {
                    clinic_id: clinic,
                    from_ms: from,
                    until_ms: until,
                    meaning,
                    signer,
                    head_hash: head.unwrap_or_default(),
                })
                .await?
                .into_inner();
            out.signed(&r);
        }
        ReviewCommand::List {
            clinics,
            since,
            until,
            limit,
        } => {
            let request = pb::ListReviewsRequest {
                clinic_ids: clinics,
                from_ms: since.unwrap_or_default(),
                until_ms: until.unwrap_or_default(),
                limit,
            };
            let answers = ctx
                .each(|mut c| {
                    let request = request.clone();
                    async move { Ok(c.list_reviews(request).await?.into_inner()) }
                })
                .await?;
            ctx.per_gateway(&answers, |out, r| out.reviews(&r.reviews));
        }
    }
    Ok(())
}
