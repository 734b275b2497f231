//! `locker network create|ls|rm`: named networks at the CLI edge.

use std::path::Path;

use anyhow::Context as _;

use crate::cli::NetworkCommand;
use crate::run::net::network;

pub(crate) fn dispatch(root: &Path, c: NetworkCommand) -> anyhow::Result<()> {
    match c {
        NetworkCommand::Create(a) => {
            if crate::run::userns::rootless() {
                anyhow::bail!(
                    "network create {}: named networks need root (a bridge on the host); a rootless container gets its own private network (slirp4netns)",
                    a.name
                );
            }
            crate::store::root_dir(root).with_context(|| format!("use {}", root.display()))?;
            let n = network::create(root, &a.name)
                .with_context(|| format!("network create {}", a.name))?;
            println!("{}", n.name);
        }
        NetworkCommand::Ls(a) => {
            let mut nets = vec![network::Network::default_network()];
            nets.extend(network::list(root));
            if a.json {
                println!("{}", serde_json::to_string_pretty(&nets)?);
            } else {
                println!("{:<24} {:<16} ISOLATED", "NAME", "BRIDGE");
                for n in nets {
                    println!("{:<24} {:<16} {}", n.name, n.bridge, n.isolated);
                }
            }
        }
        NetworkCommand::Rm(a) => {
            for name in &a.names {
                network::remove(root, name).with_context(|| format!("network rm {name}"))?;
            }
        }
    }
    Ok(())
}
