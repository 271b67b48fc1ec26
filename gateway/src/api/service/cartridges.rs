//! Cartridges (`ListCartridges`): the most worn first, their wear by model and firmware, and
//! reuse events.

use std::collections::{BTreeMap, HashMap};

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ALL, Api, limit};
use crate::api::convert;
use crate::cartridges::{Cartridge, Wear};
use crate::fleet::Device;
use crate::journal::queries::Selection;

impl Api {
    /// `ListCartridges`: the selected cartridges, aggregates and reuse events.
    pub(super) async fn cartridges(
        &self,
        request: Request<pb::ListCartridgesRequest>,
    ) -> Result<Response<pb::ListCartridgesResponse>, Status> {
        let caller = self.caller(&request, ALL, "ListCartridges")?;
        let req = request.get_ref();
        let sel = Selection {
            operators: Vec::new(),
            only_exceeded: false,
            ..caller.selection(req.filter.as_ref())?
        };
        let max = limit(req.limit) as usize;
        let (devices, cartridges, reuse) = self
            .read(|j| Ok((j.devices()?, j.cartridges()?, j.reuse_events()?)))
            .await?;
        let devices: HashMap<&str, &Device> =
            devices.iter().map(|d| (d.device_id.as_str(), d)).collect();
        let last_device = |c: &Cartridge| {
            c.sessions
                .last()
                .and_then(|s| s.split_once('/'))
                .and_then(|(d, _)| devices.get(d).copied())
        };
        let selected = |d: Option<&Device>, ts: i64| match d {
            Some(d) => sel.matches(&d.clinic_id, &d.device_id, "", &d.device_class, ts, true),
            None => sel == Selection::default(),
        };
        let mut chosen: Vec<(&Cartridge, Option<&Device>)> = cartridges
            .iter()
            .map(|c| (c, last_device(c)))
            .filter(|(c, d)| selected(*d, c.last_seen_ms))
            .collect();
        let mut groups: BTreeMap<(String, String), pb::CartridgeAggregate> = BTreeMap::new();
        for (c, d) in &chosen {
            let firmware = d.map(|d| d.firmware.clone()).unwrap_or_default();
            let g = groups
                .entry((c.model.clone(), firmware.clone()))
                .or_insert_with(|| pb::CartridgeAggregate {
                    model: c.model.clone(),
                    firmware,
                    ..pb::CartridgeAggregate::default()
                });
            g.cartridges += 1;
            g.mean_wear_pct += c.wear_pct().unwrap_or_default();
            g.warn += u32::from(c.wear == Wear::Warn);
            g.worn += u32::from(c.wear == Wear::Worn);
            g.reused += u32::from(c.reused());
        }
        let by_model_firmware = groups
            .into_values()
            .map(|mut g| {
                g.mean_wear_pct /= f64::from(g.cartridges.max(1));
                g
            })
            .collect();
        chosen.sort_by(|(a, _), (b, _)| {
            b.wear_pct()
                .unwrap_or_default()
                .total_cmp(&a.wear_pct().unwrap_or_default())
                .then_with(|| a.id.cmp(&b.id))
        });
        let cartridges = chosen
            .iter()
            .take(max)
            .map(|(c, d)| convert::cartridge(c, *d))
            .collect::<Vec<_>>();
        let reuse_events = reuse
            .iter()
            .filter(|e| selected(devices.get(e.device_id.as_str()).copied(), e.ts_ms))
            .take(max)
            .map(|e| pb::ReuseEvent {
                cartridge_id: e.cartridge_id.clone(),
                device_id: e.device_id.clone(),
                session_id: e.session_id.clone(),
                timestamp_ms: e.ts_ms,
                detail: e.detail.clone(),
            })
            .collect::<Vec<_>>();
        self.served(
            &caller,
            "ListCartridges",
            req,
            cartridges.len() + reuse_events.len(),
        );
        Ok(Response::new(pb::ListCartridgesResponse {
            cartridges,
            by_model_firmware,
            reuse_events,
        }))
    }
}
