//! Names to addresses, away from call control: a trunk's proxy is resolved before the core
//! takes the trunk's configuration (at start-up and at each reload), a name the core finds
//! unresolved is looked up when it asks, and the answer comes back to it as an input. The core
//! itself never waits on DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::TrunkConfig;

/// How long one look-up may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A host and port, as a URI names them (the port 5060 when it names none).
pub type HostPort = (String, u16);

/// The names resolved so far.
#[derive(Debug, Clone, Default)]
pub struct Names {
    addresses: HashMap<HostPort, SocketAddr>,
}

impl Names {
    /// Where `uri` is reached: its IP literal, or what its name resolved to.
    pub fn address(&self, uri: &rsip::Uri) -> Option<SocketAddr> {
        literal(uri).or_else(|| self.addresses.get(&host_port(uri)).copied())
    }

    pub fn insert(&mut self, name: HostPort, addr: SocketAddr) {
        self.addresses.insert(name, addr);
    }

    /// Takes in what `other` resolved.
    pub fn extend(&mut self, other: Names) {
        self.addresses.extend(other.addresses);
    }
}

pub fn host_port(uri: &rsip::Uri) -> HostPort {
    let port = uri.host_with_port.port.map_or(5060, |p| *p.value());
    (uri.host_with_port.host.to_string(), port)
}

/// The address of a URI whose host is an IP literal.
pub fn literal(uri: &rsip::Uri) -> Option<SocketAddr> {
    match &uri.host_with_port.host {
        rsip::Host::IpAddr(ip) => Some(SocketAddr::new(*ip, host_port(uri).1)),
        rsip::Host::Domain(_) => None,
    }
}

/// The first IPv4 address `name` resolves to, else its first address; `None` when it does not
/// resolve within [`TIMEOUT`].
pub async fn resolve(name: &HostPort) -> Option<SocketAddr> {
    let lookup = tokio::net::lookup_host((name.0.as_str(), name.1));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            tracing::warn!(name = %name.0, error = %e, "name does not resolve");
            return None;
        }
        Err(_) => {
            tracing::warn!(name = %name.0, "name lookup timed out");
            return None;
        }
    };
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied()
}

/// The addresses of the trunks' proxies that are named rather than given as IP literals.
pub async fn trunk_names(trunks: &[TrunkConfig]) -> Names {
    let mut names = Names::default();
    for trunk in trunks {
        let uri = trunk.proxy.uri();
        if literal(uri).is_some() {
            continue;
        }
        let name = host_port(uri);
        if let Some(addr) = resolve(&name).await {
            names.insert(name, addr);
        }
    }
    names
}
