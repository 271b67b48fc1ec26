//! What every command that asks the gateways is given: the connected gateways and where the
//! answers go, with the ways of asking each gateway and printing its own answers.

use penwatch_proto::client::{Fleet, GatewayError};
use penwatch_proto::v1 as pb;
use tonic::Status;

use crate::Failure;
use crate::output::Out;

/// The gateways asked, and where the answers go.
pub struct Ctx {
    /// The connected gateways.
    pub fleet: Fleet,
    /// Standard output.
    pub out: Out,
}

impl Ctx {
    /// Whether several gateways are asked (their failures then name them).
    pub fn several(&self) -> bool {
        self.fleet.len() > 1
    }

    /// A gateway's failure as the command's.
    pub fn failed(&self, e: GatewayError) -> Failure {
        Failure::from_gateway(e, self.several())
    }

    /// Every gateway's answer, or the first failure.
    pub async fn each<T, F, Fut>(&self, f: F) -> Result<Vec<(String, T)>, Failure>
    where
        F: Fn(penwatch_proto::client::Client) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.fleet
            .ask(f)
            .await
            .into_iter()
            .map(|(gateway, answer)| match answer {
                Ok(v) => Ok((gateway, v)),
                Err(status) => Err(self.failed(GatewayError { gateway, status })),
            })
            .collect()
    }

    /// Every gateway's pens selected by `filter`, each list with its gateway's address.
    pub async fn pens(
        &self,
        filter: Option<pb::Filter>,
    ) -> Result<Vec<(String, Vec<pb::DeviceState>)>, Failure> {
        self.each(|mut c| {
            let request = pb::ListDevicesRequest {
                filter: filter.clone(),
            };
            async move { Ok(c.list_devices(request).await?.into_inner().devices) }
        })
        .await
    }

    /// Where rows merged from several gateways go: with `--json`, each row naming a pen says
    /// which gateway holds it, as `listed` (each gateway's pens) tells.
    pub fn holding(&self, listed: &[(String, Vec<pb::DeviceState>)]) -> Out {
        if !self.several() || !self.out.json() {
            return self.out.clone();
        }
        let holders = listed
            .iter()
            .flat_map(|(gateway, devices)| {
                devices
                    .iter()
                    .map(move |d| (d.device_id.clone(), gateway.clone()))
            })
            .collect();
        self.out.merged(holders)
    }

    /// Where merged rows that are not pens go ([`Ctx::holding`]), the pens asked of each
    /// gateway only when the rows must name their gateway.
    pub async fn merged_out(&self) -> Result<Out, Failure> {
        if !self.several() || !self.out.json() {
            return Ok(self.out.clone());
        }
        Ok(self.holding(&self.pens(None).await?))
    }

    /// Prints each gateway's answer: as it is for one gateway, under its address for several.
    pub fn per_gateway<T>(&self, answers: &[(String, T)], print: impl Fn(&Out, &T)) {
        match answers {
            [(_, only)] if !self.several() => print(&self.out, only),
            _ => {
                for (gateway, answer) in answers {
                    print(&self.out.section(gateway), answer);
                }
            }
        }
    }
}
