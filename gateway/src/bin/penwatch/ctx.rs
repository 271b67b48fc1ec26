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

    /// Where merged rows go: with several gateways and `--json`, each row naming a pen says
    /// which gateway holds it (asked of each gateway: the pens it lists).
    pub async fn merged_out(&self) -> Result<Out, Failure> {
        if !self.several() || !self.out.json() {
            return Ok(self.out.clone());
        }
        let listed = self
            .each(|mut c| async move {
                let request = pb::ListDevicesRequest { filter: None };
                Ok(c.list_devices(request).await?.into_inner().devices)
            })
            .await?;
        let holders = listed
            .into_iter()
            .flat_map(|(gateway, devices)| {
                devices
                    .into_iter()
                    .map(move |d| (d.device_id, gateway.clone()))
            })
            .collect();
        Ok(self.out.merged(holders))
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
