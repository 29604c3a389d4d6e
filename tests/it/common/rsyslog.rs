//! A real rsyslogd on loopback for the syslog tests: imtcp (octet-counted framing on) and imudp
//! on free ports, omfile writing one line per message with the parsed fields, run as a child
//! with its own config, pid file and work directory; killed when dropped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rsyslog {
    pub tcp_port: u16,
    pub udp_port: u16,
    pub out: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("rsyslogd is not installed: run `bash scripts/setup`")
}

/// Start rsyslogd and wait until its TCP port accepts connections.
pub fn start() -> Rsyslog {
    let dir = tempfile::tempdir().unwrap();
    let (tcp_port, udp_port) = (super::free_port(), super::free_port());
    let out = dir.path().join("out.log");
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
template(name="fields" type="string" string="%pri%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
ruleset(name="kasm") {{
  action(type="omfile" file="{out}" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="kasm")
input(type="imudp" address="127.0.0.1" port="{udp_port}" ruleset="kasm")
"#,
            dir = dir.path().display(),
            out = out.display()
        ),
    )
    .unwrap();
    let child = Command::new(binary())
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rsyslogd");
    super::wait_until(
        Duration::from_secs(20),
        format_args!("rsyslogd to listen on {tcp_port}"),
        || std::net::TcpStream::connect(("127.0.0.1", tcp_port)).is_ok(),
    );
    Rsyslog {
        tcp_port,
        udp_port,
        out,
        child,
        _dir: dir,
    }
}

impl Rsyslog {
    /// The output lines, waiting (bounded) until there are at least `n`.
    pub fn wait_lines(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
