//! The connection proxy (Guacamole: RDP, VNC, SSH to websockets): cores per full-screen-video
//! user, RAM, at least two per zone, the session recording queue length and recording disk.
//! Pure arithmetic; never does I/O.

use super::num;
use serde::Serialize;

/// Cores one user watching full-screen video costs, without recording.
pub const CORES_PER_FULL_VIDEO_USER: f64 = 1.25;
/// Proxies per zone for redundancy.
pub const MIN_PROXIES_PER_ZONE: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionProxy {
    /// Proxies per zone (that has RDP/VNC/SSH servers).
    pub proxies: u32,
    pub cpus: f64,
    pub ram_gb: u32,
    pub disk_gb: f64,
    /// The Session Recording Queue Length global setting: cores / 2.
    pub recording_queue_length: u32,
    /// Users one proxy carries if every one of them watches full-screen video.
    pub full_video_users_per_proxy: u32,
    /// Proxies needed if every session were full-screen video (the worst case).
    pub proxies_all_full_video: u32,
    /// Recording disk per concurrent recorded session, GB.
    pub recording_disk_gb_per_session: f64,
    pub arithmetic: String,
}

/// The recording queue length: half the cores (at least 1).
pub fn recording_queue_length(cores: f64) -> u32 {
    ((cores / 2.0).floor() as u32).max(1)
}

/// Size the connection proxies of a zone for `sessions` concurrent sessions. `cpus` defaults
/// to the guide's example servers: 8 cores, or 16 with session recording.
pub fn connection_proxy(sessions: u32, cpus: Option<f64>, recording: bool) -> ConnectionProxy {
    let cpus = cpus.unwrap_or(if recording { 16.0 } else { 8.0 });
    let ram_gb = if recording { 8 } else { 4 };
    let queue = recording_queue_length(cpus);
    let per = ((cpus / CORES_PER_FULL_VIDEO_USER + 1e-9).floor() as u32).max(1);
    let worst = sessions.div_ceil(per).max(MIN_PROXIES_PER_ZONE);
    // With recording, one proxy must hold the raw recordings of every session it would carry
    // with the other proxy of the pair down: 1 GB per concurrent recorded session.
    let recorded_per_proxy = sessions.div_ceil(MIN_PROXIES_PER_ZONE - 1);
    let disk_gb = if recording {
        80.0 + recorded_per_proxy as f64
    } else {
        80.0
    };
    let mut arithmetic = format!(
        "Needed only in zones with RDP/VNC/SSH servers; at least {MIN_PROXIES_PER_ZONE} per zone for redundancy, \
         all identical. A full-screen-video user costs about {} cores, so {} cores carry {per} such users \
         ({} proxies if all {sessions} sessions were video; usually far fewer are active: several hundred office \
         users fit on two 16-core proxies, so size from monitoring). RAM {ram_gb} GB (4 GB minimum).",
        num(CORES_PER_FULL_VIDEO_USER),
        num(cpus),
        worst
    );
    if recording {
        arithmetic.push_str(&format!(
            " Recording: Session Recording Queue Length = {} cores / 2 = {queue}, leaving the other half for \
             streaming; disk 80 GB + at least 1 GB per concurrent recorded session, {recorded_per_proxy} on one \
             proxy with the other down = {} GB; watch disk I/O.",
            num(cpus),
            num(disk_gb)
        ));
    } else {
        arithmetic.push_str(&format!(
            " Disk 80 GB (minimal without recording). If recording is enabled later: queue length {} / 2 = {queue}.",
            num(cpus)
        ));
    }
    ConnectionProxy {
        proxies: MIN_PROXIES_PER_ZONE,
        cpus,
        ram_gb,
        disk_gb,
        recording_queue_length: queue,
        full_video_users_per_proxy: per,
        proxies_all_full_video: worst,
        recording_disk_gb_per_session: 1.0,
        arithmetic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_queue_length_is_half_the_cores() {
        // The guide: 16 cores -> 8.
        for (cores, want) in [(16.0, 8), (8.0, 4), (3.0, 1), (1.0, 1), (32.0, 16)] {
            assert_eq!(recording_queue_length(cores), want, "{cores}");
        }
        assert_eq!(
            connection_proxy(100, Some(16.0), true).recording_queue_length,
            8
        );
    }

    #[test]
    fn proxies_ram_disk_and_video_users() {
        let p = connection_proxy(200, None, false);
        assert_eq!((p.proxies, p.cpus, p.ram_gb, p.disk_gb), (2, 8.0, 4, 80.0));
        // 8 / 1.25 = 6.4 -> 6 full-video users; 200 / 6 -> 34 proxies in the worst case.
        assert_eq!(
            (p.full_video_users_per_proxy, p.proxies_all_full_video),
            (6, 34)
        );
        let r = connection_proxy(32, None, true);
        // The guide's example with recording: 16 CPUs, 8 GB, and 80 + 32 = 112 GB.
        assert_eq!((r.cpus, r.ram_gb, r.disk_gb), (16.0, 8, 112.0));
        assert_eq!(connection_proxy(1, None, false).proxies_all_full_video, 2);
    }
}
