//! The one place that talks to Docker. A thin, private wrapper around bollard in the
//! style of testcontainers: each Docker verb maps to one [`ClusterError`] variant
//! that names the object, so an error always says which call failed on what.
//!
//! A [`Docker`] is cheap and short-lived on purpose: callers connect per operation
//! instead of keeping a client in [`super::Cluster`], because a cluster handle is
//! shared across tokio runtimes (one per `#[tokio::test]`) and bollard's pooled
//! connections die with the runtime that opened them.

use std::collections::HashMap;
use std::path::{Component, Path};

use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointIpamConfig, EndpointSettings,
    HostConfig, Ipam, IpamConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig,
    PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::ClusterError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn boxed(err: bollard::errors::Error) -> BoxError {
    Box::new(err)
}

fn status_code(err: &bollard::errors::Error) -> Option<u16> {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What a container should look like; [`Docker::create_container`] turns it into
/// bollard's request.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub hostname: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub network: String,
    pub aliases: Vec<String>,
    /// (volume name, mount point)
    pub volume: Option<(String, String)>,
    /// read-only bind mounts: (host path, container path)
    pub binds_ro: Vec<(String, String)>,
    /// fixed address on the network, so iptables rules naming it stay true across
    /// restarts (Docker gives a restarted container whatever address is free)
    pub ipv4: Option<String>,
    /// container port (tcp) published on 127.0.0.1 at this host port (0: Docker picks)
    pub publish: Option<(u16, u16)>,
    pub cap_add: Vec<String>,
}

/// The facts we read back from `docker inspect`.
#[derive(Debug, Clone)]
pub(crate) struct ContainerFacts {
    /// running | exited | paused | created | restarting | dead | removing
    pub state: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    /// host port the published container port is reachable at on 127.0.0.1
    pub host_port: Option<u16>,
    /// When the container last started (RFC 3339): a new value means its
    /// processes, and its network namespace, are new.
    pub started_at: Option<String>,
}

/// How often a freeze that runc gave up on is tried again.
const FREEZE_RETRIES: u32 = 3;

/// Output of a command run inside a container.
#[derive(Debug, Clone)]
pub(crate) struct ExecOutput {
    pub exit_code: i64,
    pub output: String,
}

pub(crate) struct Docker {
    inner: bollard::Docker,
}

impl Docker {
    /// Connects (honouring DOCKER_HOST) and negotiates the API version: the server
    /// here speaks 1.41 and bollard 0.21 defaults to a newer one.
    pub async fn connect() -> Result<Docker, ClusterError> {
        let client = bollard::Docker::connect_with_defaults()
            .map_err(|err| ClusterError::Connect { source: boxed(err) })?;
        let inner = client
            .negotiate_version()
            .await
            .map_err(|err| ClusterError::Connect { source: boxed(err) })?;
        Ok(Docker { inner })
    }

    pub async fn image_exists(&self, tag: &str) -> Result<bool, ClusterError> {
        match self.inner.inspect_image(tag).await {
            Ok(_) => Ok(true),
            Err(err) if status_code(&err) == Some(404) => Ok(false),
            Err(err) => {
                Err(ClusterError::InspectImage { image: tag.to_owned(), source: boxed(err) })
            }
        }
    }

    pub async fn image_size(&self, tag: &str) -> Result<Option<i64>, ClusterError> {
        match self.inner.inspect_image(tag).await {
            Ok(image) => Ok(image.size),
            Err(err) if status_code(&err) == Some(404) => Ok(None),
            Err(err) => {
                Err(ClusterError::InspectImage { image: tag.to_owned(), source: boxed(err) })
            }
        }
    }

    /// `docker import`: a root file system as a tar stream becomes image `repo:tag`.
    /// `changes` are Dockerfile instructions (LABEL, ENV, CMD, ...).
    pub async fn import_image<S>(
        &self,
        repo: &str,
        tag: &str,
        changes: Vec<String>,
        tar: S,
    ) -> Result<(), ClusterError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(changes)
            .build();
        let image = format!("{repo}:{tag}");
        let mut progress =
            self.inner.create_image(Some(options), Some(bollard::body_try_stream(tar)), None);
        while let Some(item) = progress.next().await {
            item.map_err(|err| ClusterError::ImportImage {
                image: image.clone(),
                source: boxed(err),
            })?;
        }
        Ok(())
    }

    /// Creates a labelled bridge network, with the given subnet or one Docker picks.
    pub async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        subnet: Option<&str>,
    ) -> Result<(), ClusterError> {
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels),
            ipam: subnet.map(|subnet| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_owned()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.inner.create_network(request).await.map(|_| ()).map_err(|err| {
            ClusterError::CreateNetwork { network: name.to_owned(), source: boxed(err) }
        })
    }

    /// The IPv4 subnet Docker gave a network, e.g. "172.19.0.0/16".
    pub async fn network_subnet(&self, name: &str) -> Result<Option<String>, ClusterError> {
        let network = self.inner.inspect_network(name, None).await.map_err(|err| {
            ClusterError::InspectNetwork { network: name.to_owned(), source: boxed(err) }
        })?;
        Ok(network
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|config| config.subnet)
            .find(|subnet| subnet.contains('.')))
    }

    pub async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ClusterError> {
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..Default::default()
        };
        self.inner.create_volume(request).await.map(|_| ()).map_err(|err| {
            ClusterError::CreateVolume { volume: name.to_owned(), source: boxed(err) }
        })
    }

    pub async fn create_container(&self, plan: &ContainerPlan) -> Result<(), ClusterError> {
        let mut host_config = HostConfig {
            cap_add: Some(plan.cap_add.clone()),
            network_mode: Some(plan.network.clone()),
            ..Default::default()
        };
        let mut exposed_ports = None;
        if let Some((container_port, host_port)) = plan.publish {
            let key = format!("{container_port}/tcp");
            let host_port = if host_port == 0 { String::new() } else { host_port.to_string() };
            host_config.port_bindings = Some(HashMap::from([(
                key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(host_port),
                }]),
            )]));
            exposed_ports = Some(vec![key]);
        }
        let mut mounts = Vec::new();
        if let Some((volume, target)) = &plan.volume {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(volume.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        for (source, target) in &plan.binds_ro {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(source.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
        }
        host_config.mounts = Some(mounts);
        let body = ContainerCreateBody {
            hostname: Some(plan.hostname.clone()),
            image: Some(plan.image.clone()),
            entrypoint: plan.entrypoint.clone(),
            cmd: Some(plan.cmd.clone()),
            env: Some(plan.env.clone()),
            labels: Some(plan.labels.clone()),
            exposed_ports,
            host_config: Some(host_config),
            networking_config: (plan.network != "none").then(|| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    plan.network.clone(),
                    EndpointSettings {
                        aliases: Some(plan.aliases.clone()),
                        ipam_config: plan.ipv4.as_ref().map(|ip| EndpointIpamConfig {
                            ipv4_address: Some(ip.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&plan.name).build();
        self.inner.create_container(Some(options), body).await.map(|_| ()).map_err(|err| {
            ClusterError::CreateContainer { container: plan.name.clone(), source: boxed(err) }
        })
    }

    pub async fn start_container(&self, name: &str) -> Result<(), ClusterError> {
        match self.inner.start_container(name, None).await {
            // 304: already running
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(304) => Ok(()),
            Err(err) => {
                Err(ClusterError::StartContainer { container: name.to_owned(), source: boxed(err) })
            }
        }
    }

    /// Graceful stop: SIGTERM, then SIGKILL after `timeout_s`.
    pub async fn stop_container(&self, name: &str, timeout_s: i32) -> Result<(), ClusterError> {
        let options = StopContainerOptionsBuilder::default().t(timeout_s).build();
        match self.inner.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(304) => Ok(()),
            Err(err) => {
                Err(ClusterError::StopContainer { container: name.to_owned(), source: boxed(err) })
            }
        }
    }

    pub async fn kill_container(&self, name: &str) -> Result<(), ClusterError> {
        let options = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
        self.inner.kill_container(name, Some(options)).await.map_err(|err| {
            ClusterError::KillContainer { container: name.to_owned(), source: boxed(err) }
        })
    }

    /// Freezes a container's processes. runc gives up on a freeze that does not
    /// settle in time ("unable to freeze", seen under load), leaving the container
    /// running: that is retried a few times before it counts as a failure.
    pub async fn pause_container(&self, name: &str) -> Result<(), ClusterError> {
        let mut tries = 0;
        loop {
            match self.inner.pause_container(name).await {
                Ok(()) => return Ok(()),
                Err(err)
                    if tries < FREEZE_RETRIES && err.to_string().contains("unable to freeze") =>
                {
                    tries += 1;
                    tracing::debug!("pausing {name}: {err}; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(err) => {
                    return Err(ClusterError::PauseContainer {
                        container: name.to_owned(),
                        source: boxed(err),
                    })
                }
            }
        }
    }

    pub async fn unpause_container(&self, name: &str) -> Result<(), ClusterError> {
        self.inner.unpause_container(name).await.map_err(|err| ClusterError::UnpauseContainer {
            container: name.to_owned(),
            source: boxed(err),
        })
    }

    /// Force-removes a container; one that is already gone is not an error. Its
    /// anonymous volumes go with it (images such as the official `zookeeper` declare
    /// VOLUMEs we never label); named volumes, such as a node's data, stay.
    pub async fn remove_container(&self, name: &str) -> Result<(), ClusterError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.inner.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            Err(err) => Err(ClusterError::RemoveContainer {
                container: name.to_owned(),
                source: boxed(err),
            }),
        }
    }

    pub async fn remove_volume(&self, name: &str) -> Result<(), ClusterError> {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match self.inner.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            Err(err) => {
                Err(ClusterError::RemoveVolume { volume: name.to_owned(), source: boxed(err) })
            }
        }
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), ClusterError> {
        match self.inner.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            Err(err) => {
                Err(ClusterError::RemoveNetwork { network: name.to_owned(), source: boxed(err) })
            }
        }
    }

    /// `None` when no such container exists.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<ContainerFacts>, ClusterError> {
        let info = match self.inner.inspect_container(name, None).await {
            Ok(info) => info,
            Err(err) if status_code(&err) == Some(404) => return Ok(None),
            Err(err) => {
                return Err(ClusterError::InspectContainer {
                    container: name.to_owned(),
                    source: boxed(err),
                })
            }
        };
        let state = info
            .state
            .as_ref()
            .and_then(|state| state.status)
            .map(state_name)
            .unwrap_or("unknown")
            .to_owned();
        let started_at = info.state.as_ref().and_then(|state| state.started_at.clone());
        let config = info.config.unwrap_or_default();
        let settings = info.network_settings.unwrap_or_default();
        let host_port = settings
            .ports
            .as_ref()
            .and_then(|ports| ports.values().flatten().flatten().next().cloned())
            .or_else(|| {
                // A stopped container has no live mapping; the requested one is in
                // the host config when we chose the port ourselves.
                info.host_config
                    .as_ref()
                    .and_then(|host| host.port_bindings.as_ref())
                    .and_then(|ports| ports.values().flatten().flatten().next().cloned())
            })
            .and_then(|binding| binding.host_port)
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|port| *port != 0);
        Ok(Some(ContainerFacts {
            state,
            image: config.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            host_port,
            started_at,
        }))
    }

    /// Names of the containers (any state) carrying every one of these labels.
    pub async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<String>, ClusterError> {
        Ok(self.list_containers_labelled(labels).await?.into_iter().map(|(name, _)| name).collect())
    }

    /// Like [`Docker::list_containers`], with each container's labels.
    pub async fn list_containers_labelled(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<(String, HashMap<String, String>)>, ClusterError> {
        let filters = label_filters(labels);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers = self
            .inner
            .list_containers(Some(options))
            .await
            .map_err(|err| ClusterError::ListContainers { source: boxed(err) })?;
        Ok(containers
            .into_iter()
            .filter_map(|summary| {
                let name = summary.names?.into_iter().next()?;
                Some((name.trim_start_matches('/').to_owned(), summary.labels.unwrap_or_default()))
            })
            .collect())
    }

    pub async fn list_volumes(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, ClusterError> {
        let filters = label_filters(labels);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let response = self
            .inner
            .list_volumes(Some(options))
            .await
            .map_err(|err| ClusterError::ListVolumes { source: boxed(err) })?;
        Ok(response.volumes.unwrap_or_default().into_iter().map(|volume| volume.name).collect())
    }

    /// The ids of the networks carrying `labels`. Ids, not names: Docker lets two
    /// networks share a name (two runs racing), and then refuses a removal by name.
    pub async fn list_networks(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<String>, ClusterError> {
        let filters = label_filters(labels);
        let options = ListNetworksOptionsBuilder::default().filters(&filters).build();
        let networks = self
            .inner
            .list_networks(Some(options))
            .await
            .map_err(|err| ClusterError::ListNetworks { source: boxed(err) })?;
        Ok(networks.into_iter().filter_map(|network| network.id).collect())
    }

    /// Runs `cmd` inside a running container and collects its output.
    pub async fn exec(&self, container: &str, cmd: &[&str]) -> Result<ExecOutput, ClusterError> {
        let command = cmd.join(" ");
        let exec_err = |err: bollard::errors::Error| ClusterError::Exec {
            container: container.to_owned(),
            command: command.clone(),
            source: boxed(err),
        };
        let created = self
            .inner
            .create_exec(
                container,
                bollard::exec::CreateExecOptions {
                    cmd: Some(cmd.iter().map(|part| (*part).to_owned()).collect()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(exec_err)?;
        let mut output = String::new();
        if let bollard::exec::StartExecResults::Attached { output: mut stream, .. } =
            self.inner.start_exec(&created.id, None).await.map_err(exec_err)?
        {
            while let Some(chunk) = stream.next().await {
                output.push_str(&chunk.map_err(exec_err)?.to_string());
            }
        }
        let inspect = self.inner.inspect_exec(&created.id).await.map_err(exec_err)?;
        Ok(ExecOutput { exit_code: inspect.exit_code.unwrap_or(-1), output })
    }

    /// The container's stdout and stderr, the last `tail` lines (all when `None`).
    pub async fn logs(&self, container: &str, tail: Option<usize>) -> Result<String, ClusterError> {
        let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&tail).build();
        let mut stream = self.inner.logs(container, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| ClusterError::Logs {
                container: container.to_owned(),
                source: boxed(err),
            })?;
            text.push_str(&chunk.to_string());
        }
        Ok(text)
    }

    /// `docker cp container:path dest`: copies a directory out of a container,
    /// running or stopped, into `dest` (created), without the directory's own name
    /// (`/data/version-2/x` lands at `dest/version-2/x`). Returns the files copied.
    ///
    /// Docker sends a tar. It is spooled to `dest.tar` beside `dest` and unpacked
    /// from there, since a ZooKeeper data directory (preallocated transaction logs)
    /// can be far more than memory should hold; the spool is removed after.
    pub async fn download(
        &self,
        container: &str,
        path: &str,
        dest: &Path,
    ) -> Result<u64, ClusterError> {
        let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
        let spool = dest.with_extension("tar");
        std::fs::create_dir_all(dest)
            .map_err(ClusterError::io(format!("creating {}", dest.display())))?;
        let writing = || ClusterError::io(format!("writing {}", spool.display()));
        let mut file = tokio::fs::File::create(&spool).await.map_err(writing())?;
        let mut stream = self.inner.download_from_container(container, Some(options));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| ClusterError::Download {
                container: container.to_owned(),
                path: path.to_owned(),
                source: boxed(err),
            })?;
            file.write_all(&chunk).await.map_err(writing())?;
        }
        file.flush().await.map_err(writing())?;
        drop(file);
        let (archive, into) = (spool.clone(), dest.to_owned());
        let unpacked = tokio::task::spawn_blocking(move || unpack_stripped(&archive, &into))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
        let _ = std::fs::remove_file(&spool);
        unpacked.map_err(ClusterError::io(format!(
            "unpacking {container}:{path} into {}",
            dest.display()
        )))
    }

    /// Waits until the container exits; returns its exit code.
    pub async fn wait_container(&self, container: &str) -> Result<i64, ClusterError> {
        let mut stream = self.inner.wait_container(container, None);
        let mut code = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(response) => code = response.status_code,
                // bollard reports a non-zero exit as an error carrying the code
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(err) => {
                    return Err(ClusterError::WaitContainer {
                        container: container.to_owned(),
                        source: boxed(err),
                    })
                }
            }
        }
        Ok(code)
    }
}

/// Unpacks a tar from `docker cp` into `dest` without its top directory. Only
/// directories and regular files are written, and only at plain relative paths: a
/// symlink or a `..` from a container must not write outside `dest`.
fn unpack_stripped(archive: &Path, dest: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::open(archive)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut files = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let mut components = path.components();
        components.next();
        let inner = components.as_path();
        if inner.as_os_str().is_empty()
            || !inner.components().all(|c| matches!(c, Component::Normal(_)))
        {
            continue;
        }
        let target = dest.join(inner);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            entry.unpack(&target)?;
            files += 1;
        }
    }
    Ok(files)
}

fn label_filters(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        labels
            .iter()
            .map(
                |(key, value)| {
                    if value.is_empty() {
                        (*key).to_owned()
                    } else {
                        format!("{key}={value}")
                    }
                },
            )
            .collect(),
    )])
}

fn state_name(status: ContainerStateStatusEnum) -> &'static str {
    match status {
        ContainerStateStatusEnum::RUNNING => "running",
        ContainerStateStatusEnum::PAUSED => "paused",
        ContainerStateStatusEnum::CREATED => "created",
        ContainerStateStatusEnum::RESTARTING => "restarting",
        ContainerStateStatusEnum::REMOVING => "removing",
        ContainerStateStatusEnum::EXITED => "exited",
        ContainerStateStatusEnum::DEAD => "dead",
        ContainerStateStatusEnum::STOPPING => "stopping",
        ContainerStateStatusEnum::EMPTY => "unknown",
    }
}
