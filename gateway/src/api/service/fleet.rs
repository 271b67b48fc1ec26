//! The fleet's pens, listed (`ListDevices`) and watched (`WatchFleet`), and their judged
//! samples streamed live (`StreamSamples`).

use std::collections::HashMap;

use penwatch_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{ALL, Api};
use crate::api::convert::{self, DeviceExtra};
use crate::api::stream::{self, FleetTracker, Stream};
use crate::fleet::Device;
use crate::journal::queries::Selection;
use crate::journal::{self, Reader};
use crate::live::LiveEvent;

/// The selection without its time range (devices are not selected by time).
fn untimed(sel: &Selection) -> Selection {
    Selection {
        from_ms: None,
        to_ms: None,
        ..sel.clone()
    }
}

/// Devices with what the fleet view adds to them.
fn fleet(j: &Reader) -> journal::Result<Vec<(Device, DeviceExtra)>> {
    let mut out = Vec::new();
    for d in j.devices()? {
        let mut extra = DeviceExtra::default();
        if !d.session_id.is_empty()
            && let Some(s) = j.stored_session(&d.device_id, &d.session_id)?
        {
            extra = DeviceExtra::of_session(&s.session);
        }
        if !d.cartridge_id.is_empty()
            && let Some(c) = j.cartridge(&d.cartridge_id)?
        {
            extra.cartridge_wear_pct = c.wear_pct().unwrap_or_default();
        }
        out.push((d, extra));
    }
    Ok(out)
}

fn device_selected(sel: &Selection, d: &Device, extra: Option<&DeviceExtra>) -> bool {
    let exceeded = extra.is_some_and(|e| e.session_id == d.session_id && e.exceeded);
    sel.matches(
        &d.clinic_id,
        &d.device_id,
        &d.operator_id,
        &d.device_class,
        0,
        exceeded,
    )
}

impl Api {
    /// `ListDevices`: the selected pens as they stand.
    pub(super) async fn devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let caller = self.caller(&request, ALL, "ListDevices")?;
        let sel = untimed(&caller.selection(request.get_ref().filter.as_ref())?);
        let devices = self.read(fleet).await?;
        let devices = devices
            .iter()
            .filter(|(d, e)| device_selected(&sel, d, Some(e)))
            .map(|(d, e)| convert::device_state(d, Some(e), &caller))
            .collect::<Vec<_>>();
        self.served(&caller, "ListDevices", request.get_ref(), devices.len());
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    /// `WatchFleet`: the selected pens, then each change of one.
    pub(super) async fn fleet_stream(
        &self,
        request: Request<pb::WatchFleetRequest>,
    ) -> Result<Response<Stream<pb::DeviceState>>, Status> {
        let caller = self.caller(&request, ALL, "WatchFleet")?;
        self.served(&caller, "WatchFleet", request.get_ref(), 0);
        let sel = untimed(&caller.selection(request.get_ref().filter.as_ref())?);
        let events = self.shared.live.subscribe();
        let devices = self.read(fleet).await?;
        let initial = devices
            .iter()
            .filter(|(d, e)| device_selected(&sel, d, Some(e)))
            .map(|(d, e)| convert::device_state(d, Some(e), &caller))
            .collect();
        let extras: HashMap<String, DeviceExtra> =
            devices.into_iter().map(|(d, e)| (d.device_id, e)).collect();
        let mut tracker = FleetTracker::new(extras, self.shared.policy.clone());
        let stream =
            stream::forward(
                initial,
                events,
                self.shared.stop.clone(),
                move |event| match event {
                    LiveEvent::Sample {
                        reading, verdict, ..
                    } => {
                        tracker.observe(reading, verdict);
                        Vec::new()
                    }
                    LiveEvent::Device(d) if device_selected(&sel, d, tracker.get(&d.device_id)) => {
                        vec![convert::device_state(d, tracker.get(&d.device_id), &caller)]
                    }
                    _ => Vec::new(),
                },
            );
        Ok(Response::new(stream))
    }

    /// `StreamSamples`: each selected judged sample as it arrives.
    pub(super) async fn samples_stream(
        &self,
        request: Request<pb::StreamSamplesRequest>,
    ) -> Result<Response<Stream<pb::JudgedSample>>, Status> {
        let caller = self.caller(&request, ALL, "StreamSamples")?;
        self.served(&caller, "StreamSamples", request.get_ref(), 0);
        let sel = caller.selection(request.get_ref().filter.as_ref())?;
        let events = self.shared.live.subscribe();
        let stream =
            stream::forward(
                Vec::new(),
                events,
                self.shared.stop.clone(),
                move |event| match event {
                    LiveEvent::Sample {
                        reading: r,
                        verdict: v,
                        received_ms,
                    } if sel.matches(
                        &r.clinic_id,
                        &r.device_id,
                        &r.operator_id,
                        &v.device_class,
                        r.timestamp_ms,
                        v.exceeded,
                    ) =>
                    {
                        vec![convert::judged_sample(r, v, *received_ms, &caller)]
                    }
                    _ => Vec::new(),
                },
            );
        Ok(Response::new(stream))
    }
}
