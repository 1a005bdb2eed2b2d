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
    ContainerCreateBody, ContainerStateStatusEnum, EndpointIpamConfig, EndpointPortConfig,
    EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSettings,
    EndpointSpec, EndpointSpecModeEnum, HostConfig, HostConfigCgroupnsModeEnum, Ipam, IpamConfig,
    Mount, MountType, MountVolumeOptions, NetworkAttachmentConfig, NetworkCreateRequest,
    NetworkingConfig, PortBinding, ServiceSpec, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, SwarmInitRequest,
    SwarmJoinRequest, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ImportImageOptionsBuilder, InspectServiceOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListNodesOptions,
    ListServicesOptionsBuilder, ListTasksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder, UpdateNodeOptionsBuilder,
    UpdateServiceOptionsBuilder, UploadToContainerOptionsBuilder,
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
    /// publish on every interface, not 127.0.0.1: the engine is on another machine
    pub publish_everywhere: bool,
    /// more container ports published on 127.0.0.1, each at the same number
    pub publish_same: Vec<u16>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `seccomp=unconfined`, ...
    pub security_opt: Vec<String>,
    /// share the machine's cgroup namespace (an engine inside needs it, cgroup v1)
    pub cgroupns_host: bool,
    /// neither mask nor make read-only /proc and /sys paths (what the CLI's
    /// `--security-opt systempaths=unconfined` does): an engine inside mounts there
    pub unmask_system_paths: bool,
    /// read-write bind mounts: (host path, container path)
    pub binds_rw: Vec<(String, String)>,
    /// tmpfs mounts (container paths)
    pub tmpfs: Vec<String>,
}

/// A Swarm service of one replica pinned to one node, which the swarm never
/// restarts by itself; [`Docker::create_service`] turns it into bollard's spec.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServicePlan {
    pub name: String,
    pub image: String,
    pub hostname: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// on the service and on its containers
    pub labels: HashMap<String, String>,
    /// an overlay network
    pub network: String,
    pub aliases: Vec<String>,
    pub volumes: Vec<VolumeMount>,
    /// the swarm node the one task runs on
    pub node_id: String,
    /// container port (tcp) published on the node's own interfaces at this port
    pub publish: (u16, u16),
    pub cap_add: Vec<String>,
    /// SIGTERM to SIGKILL on a stop
    pub stop_grace: std::time::Duration,
}

/// A named volume on the task's node, created with these labels if missing.
#[derive(Debug, Clone, Default)]
pub(crate) struct VolumeMount {
    pub volume: String,
    pub target: String,
    pub read_only: bool,
    pub labels: HashMap<String, String>,
}

/// What we read back about a service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceFacts {
    pub name: String,
    pub id: String,
    pub labels: HashMap<String, String>,
    /// the node its placement constraint pins it to
    pub node_id: Option<String>,
    /// ports it publishes on its node
    pub published: Vec<u16>,
}

/// What we read back about a task (one run of a service's container).
#[derive(Debug, Clone)]
pub(crate) struct TaskFacts {
    pub id: String,
    pub service_id: String,
    pub slot: i64,
    pub node_id: String,
    /// what the swarm wants: running, shutdown, ...
    pub desired: String,
    /// where it is: new, pending, ..., running, failed, shutdown, rejected, ...
    pub state: String,
    /// the swarm's error or status message ("" when none)
    pub message: String,
    pub container_id: Option<String>,
    /// RFC 3339
    pub created_at: String,
}

/// What we read back about a swarm node.
#[derive(Debug, Clone)]
pub(crate) struct NodeFacts {
    pub id: String,
    pub hostname: String,
    pub labels: HashMap<String, String>,
    /// `ready`, `down`, ...
    pub state: String,
}

/// What an engine says about itself.
#[derive(Debug, Clone)]
pub(crate) struct EngineFacts {
    /// its host name
    pub name: String,
    /// its node id in a swarm ("" in none)
    pub node_id: String,
    /// `inactive`, `pending`, `active`, `error`, `locked`
    pub swarm_state: String,
    /// it manages the swarm
    pub manager: bool,
    /// where its swarm's managers listen (`ip:2377`)
    pub managers: Vec<String>,
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
    /// IPv4 address on each network it is attached to (the one it had, when stopped)
    pub ips: HashMap<String, String>,
}

/// How often a freeze that runc gave up on is tried again.
const FREEZE_RETRIES: u32 = 3;

/// Output of a command run inside a container.
#[derive(Debug, Clone)]
pub(crate) struct ExecOutput {
    pub exit_code: i64,
    pub output: String,
}

#[derive(Clone)]
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

    /// Connects to the engine at `endpoint` (`unix:///var/run/docker.sock`,
    /// `tcp://host:port`) and negotiates the API version.
    pub async fn connect_to(endpoint: &str) -> Result<Docker, ClusterError> {
        let failed =
            |err| ClusterError::ConnectTo { endpoint: endpoint.to_owned(), source: boxed(err) };
        let client = bollard::Docker::connect_with_host(endpoint).map_err(failed)?;
        let inner = client.negotiate_version().await.map_err(failed)?;
        Ok(Docker { inner })
    }

    /// `docker info`: the engine's name and its place in a swarm.
    pub async fn engine(&self) -> Result<EngineFacts, ClusterError> {
        let info =
            self.inner.info().await.map_err(|err| ClusterError::Info { source: boxed(err) })?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(EngineFacts {
            name: info.name.unwrap_or_default(),
            node_id: swarm.node_id.unwrap_or_default(),
            swarm_state: swarm.local_node_state.map(|state| state.to_string()).unwrap_or_default(),
            manager: swarm.control_available.unwrap_or(false),
            managers: swarm
                .remote_managers
                .unwrap_or_default()
                .into_iter()
                .filter_map(|peer| peer.addr)
                .collect(),
        })
    }

    /// `docker swarm init`, advertising the address of interface or IP `advertise`.
    pub async fn init_swarm(&self, advertise: &str) -> Result<(), ClusterError> {
        let request = SwarmInitRequest {
            listen_addr: Some("0.0.0.0:2377".to_owned()),
            advertise_addr: Some(advertise.to_owned()),
            ..Default::default()
        };
        self.inner
            .init_swarm(request)
            .await
            .map(drop)
            .map_err(|err| ClusterError::InitSwarm { source: boxed(err) })
    }

    /// The token a worker joins this manager's swarm with.
    pub async fn worker_join_token(&self) -> Result<String, ClusterError> {
        let swarm = self
            .inner
            .inspect_swarm()
            .await
            .map_err(|err| ClusterError::InspectSwarm { source: boxed(err) })?;
        Ok(swarm.join_tokens.and_then(|tokens| tokens.worker).unwrap_or_default())
    }

    /// `docker swarm join` as a worker of the manager at `manager` (`ip:2377`).
    pub async fn join_swarm(
        &self,
        manager: &str,
        token: &str,
        advertise: &str,
    ) -> Result<(), ClusterError> {
        let request = SwarmJoinRequest {
            listen_addr: Some("0.0.0.0:2377".to_owned()),
            advertise_addr: Some(advertise.to_owned()),
            remote_addrs: Some(vec![manager.to_owned()]),
            join_token: Some(token.to_owned()),
            ..Default::default()
        };
        self.inner.join_swarm(request).await.map_err(|err| ClusterError::JoinSwarm {
            manager: manager.to_owned(),
            source: boxed(err),
        })
    }

    /// The swarm's nodes (on a manager).
    pub async fn list_nodes(&self) -> Result<Vec<NodeFacts>, ClusterError> {
        let nodes = self
            .inner
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|err| ClusterError::ListNodes { source: boxed(err) })?;
        Ok(nodes
            .into_iter()
            .map(|node| NodeFacts {
                id: node.id.unwrap_or_default(),
                hostname: node
                    .description
                    .and_then(|description| description.hostname)
                    .unwrap_or_default(),
                labels: node.spec.and_then(|spec| spec.labels).unwrap_or_default(),
                state: node
                    .status
                    .and_then(|status| status.state)
                    .map(|state| state.to_string())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Adds `labels` to a swarm node's (on a manager).
    pub async fn label_node(
        &self,
        id: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ClusterError> {
        let failed = |err| ClusterError::UpdateNode { node: id.to_owned(), source: boxed(err) };
        let node = self.inner.inspect_node(id).await.map_err(failed)?;
        let version = node.version.and_then(|version| version.index).unwrap_or_default();
        let mut spec = node.spec.unwrap_or_default();
        spec.labels.get_or_insert_with(HashMap::new).extend(labels);
        let options = UpdateNodeOptionsBuilder::default().version(version as i64).build();
        self.inner.update_node(id, spec, options).await.map_err(failed)
    }

    /// Creates a service from `plan` (on a manager).
    pub async fn create_service(&self, plan: &ServicePlan) -> Result<(), ClusterError> {
        let mounts = plan
            .volumes
            .iter()
            .map(|mount| Mount {
                target: Some(mount.target.clone()),
                source: Some(mount.volume.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(mount.read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(mount.labels.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let spec = ServiceSpec {
            name: Some(plan.name.clone()),
            labels: Some(plan.labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(plan.image.clone()),
                    labels: Some(plan.labels.clone()),
                    command: Some(plan.command.clone()),
                    args: Some(plan.args.clone()),
                    hostname: Some(plan.hostname.clone()),
                    env: Some(plan.env.clone()),
                    mounts: Some(mounts),
                    stop_grace_period: Some(plan.stop_grace.as_nanos() as i64),
                    capability_add: Some(plan.cap_add.clone()),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(vec![format!("node.id=={}", plan.node_id)]),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(plan.network.clone()),
                    aliases: Some(plan.aliases.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            update_config: Some(ServiceSpecUpdateConfig {
                parallelism: Some(1),
                failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE),
                order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: Some(vec![EndpointPortConfig {
                    protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                    target_port: Some(i64::from(plan.publish.0)),
                    published_port: Some(i64::from(plan.publish.1)),
                    publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        };
        self.inner.create_service(spec, None).await.map(drop).map_err(|err| {
            ClusterError::CreateService { service: plan.name.clone(), source: boxed(err) }
        })
    }

    /// The services carrying every one of these labels (on a manager).
    pub async fn list_services(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ServiceFacts>, ClusterError> {
        let filters = label_filters(labels);
        let options = ListServicesOptionsBuilder::default().filters(&filters).build();
        let services = self
            .inner
            .list_services(Some(options))
            .await
            .map_err(|err| ClusterError::ListServices { source: boxed(err) })?;
        Ok(services.into_iter().map(service_facts).collect())
    }

    /// Makes the swarm replace a service's task with a new one (`docker service
    /// update --force`), running `image` from now on if given, with environment
    /// variable `env.0` set to `env.1` (removed when empty). The swarm stops the old
    /// task first; with no restart policy this is what starts a dead one again.
    pub async fn redeploy_service(
        &self,
        name: &str,
        image: Option<&str>,
        env: (&str, &str),
    ) -> Result<(), ClusterError> {
        let failed =
            |err| ClusterError::UpdateService { service: name.to_owned(), source: boxed(err) };
        let mut tries = 0;
        loop {
            let service = self
                .inner
                .inspect_service(name, None::<InspectServiceOptions>)
                .await
                .map_err(failed)?;
            let version = service.version.and_then(|version| version.index).unwrap_or_default();
            let mut spec = service.spec.unwrap_or_default();
            let template = spec.task_template.get_or_insert_with(Default::default);
            template.force_update = Some(template.force_update.unwrap_or(0) + 1);
            let container = template.container_spec.get_or_insert_with(Default::default);
            if let Some(image) = image {
                container.image = Some(image.to_owned());
            }
            let (key, value) = env;
            let vars = container.env.get_or_insert_with(Vec::new);
            vars.retain(|var| !var.starts_with(&format!("{key}=")));
            if !value.is_empty() {
                vars.push(format!("{key}={value}"));
            }
            let options = UpdateServiceOptionsBuilder::default().version(version as i32).build();
            match self.inner.update_service(name, spec, options, None).await {
                Ok(_) => return Ok(()),
                // another update got in between ("update out of sequence"): read again
                Err(err) if tries < 3 && err.to_string().contains("out of sequence") => tries += 1,
                Err(err) => return Err(failed(err)),
            }
        }
    }

    /// Removes a service; one already gone is not an error.
    pub async fn remove_service(&self, name: &str) -> Result<(), ClusterError> {
        match self.inner.delete_service(name).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            Err(err) => {
                Err(ClusterError::RemoveService { service: name.to_owned(), source: boxed(err) })
            }
        }
    }

    /// Every task of these services, whatever its state (on a manager).
    pub async fn list_tasks(&self, services: &[String]) -> Result<Vec<TaskFacts>, ClusterError> {
        let filters = HashMap::from([("service".to_owned(), services.to_vec())]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        let tasks = self
            .inner
            .list_tasks(Some(options))
            .await
            .map_err(|err| ClusterError::ListTasks { source: boxed(err) })?;
        Ok(tasks
            .into_iter()
            .map(|task| {
                let status = task.status.unwrap_or_default();
                let message =
                    status.err.filter(|err| !err.is_empty()).or(status.message).unwrap_or_default();
                TaskFacts {
                    id: task.id.unwrap_or_default(),
                    service_id: task.service_id.unwrap_or_default(),
                    slot: task.slot.unwrap_or(0),
                    node_id: task.node_id.unwrap_or_default(),
                    desired: task.desired_state.map(|state| state.to_string()).unwrap_or_default(),
                    state: status.state.map(|state| state.to_string()).unwrap_or_default(),
                    message,
                    container_id: status
                        .container_status
                        .and_then(|container| container.container_id)
                        .filter(|id| !id.is_empty()),
                    created_at: task.created_at.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Creates an attachable overlay network (on a swarm manager).
    pub async fn create_overlay_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), ClusterError> {
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("overlay".to_owned()),
            attachable: Some(true),
            labels: Some(labels),
            ..Default::default()
        };
        self.inner.create_network(request).await.map(|_| ()).map_err(|err| {
            ClusterError::CreateNetwork { network: name.to_owned(), source: boxed(err) }
        })
    }

    /// `docker save | docker load`: copies `image` from `source` into this engine,
    /// streamed, never whole in memory.
    pub async fn load_image_from(&self, source: &Docker, image: &str) -> Result<(), ClusterError> {
        let saved = source.inner.export_image(image);
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut progress = self.inner.import_image_stream(options, saved, None);
        while let Some(item) = progress.next().await {
            let info = item.map_err(|err| ClusterError::LoadImage {
                image: image.to_owned(),
                source: boxed(err),
            })?;
            if let Some(error) = info.error_detail.and_then(|detail| detail.message) {
                return Err(ClusterError::LoadImage {
                    image: image.to_owned(),
                    source: error.into(),
                });
            }
        }
        Ok(())
    }

    /// `docker cp - container:dir`: unpacks a tar stream into `dir` of a container
    /// (created or running), volumes mounted there included.
    pub async fn upload<S>(&self, container: &str, dir: &str, tar: S) -> Result<(), ClusterError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let options = UploadToContainerOptionsBuilder::default().path(dir).build();
        self.inner
            .upload_to_container(container, Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(|err| ClusterError::Upload {
                container: container.to_owned(),
                path: dir.to_owned(),
                source: boxed(err),
            })
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

    /// The image's labels; `None` when there is no such image.
    pub async fn image_labels(
        &self,
        tag: &str,
    ) -> Result<Option<HashMap<String, String>>, ClusterError> {
        match self.inner.inspect_image(tag).await {
            Ok(image) => {
                Ok(Some(image.config.and_then(|config| config.labels).unwrap_or_default()))
            }
            Err(err) if status_code(&err) == Some(404) => Ok(None),
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

    /// Creates a labelled volume of the local driver; `driver_opts` are its mount
    /// options (`type`, `device`, `o`), empty for a plain directory volume.
    pub async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        driver_opts: HashMap<String, String>,
    ) -> Result<(), ClusterError> {
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(labels),
            driver_opts: (!driver_opts.is_empty()).then_some(driver_opts),
            ..Default::default()
        };
        self.inner.create_volume(request).await.map(|_| ()).map_err(|err| {
            ClusterError::CreateVolume { volume: name.to_owned(), source: boxed(err) }
        })
    }

    pub async fn create_container(&self, plan: &ContainerPlan) -> Result<(), ClusterError> {
        let mut host_config = HostConfig {
            cap_add: Some(plan.cap_add.clone()),
            cap_drop: (!plan.cap_drop.is_empty()).then(|| plan.cap_drop.clone()),
            security_opt: (!plan.security_opt.is_empty()).then(|| plan.security_opt.clone()),
            cgroupns_mode: plan.cgroupns_host.then_some(HostConfigCgroupnsModeEnum::HOST),
            masked_paths: plan.unmask_system_paths.then(Vec::new),
            readonly_paths: plan.unmask_system_paths.then(Vec::new),
            tmpfs: (!plan.tmpfs.is_empty())
                .then(|| plan.tmpfs.iter().map(|path| (path.clone(), String::new())).collect()),
            network_mode: Some(plan.network.clone()),
            ..Default::default()
        };
        let mut published: Vec<(u16, u16)> = plan.publish.into_iter().collect();
        published.extend(plan.publish_same.iter().map(|port| (*port, *port)));
        let mut exposed_ports = None;
        if !published.is_empty() {
            let binding = |host_port: u16| {
                let host_port = if host_port == 0 { String::new() } else { host_port.to_string() };
                let host_ip = if plan.publish_everywhere { "0.0.0.0" } else { "127.0.0.1" };
                Some(vec![PortBinding {
                    host_ip: Some(host_ip.to_owned()),
                    host_port: Some(host_port),
                }])
            };
            host_config.port_bindings = Some(
                published
                    .iter()
                    .map(|(container_port, host_port)| {
                        (format!("{container_port}/tcp"), binding(*host_port))
                    })
                    .collect(),
            );
            exposed_ports = Some(
                published
                    .iter()
                    .map(|(container_port, _)| format!("{container_port}/tcp"))
                    .collect(),
            );
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
        let binds = plan.binds_ro.iter().map(|bind| (bind, true));
        for ((source, target), read_only) in binds.chain(plan.binds_rw.iter().map(|b| (b, false))) {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(source.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(read_only),
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

    /// Renames a container: an upgrade keeps the replaced container, stopped,
    /// under another name, so that its log outlives it.
    pub async fn rename_container(&self, name: &str, new_name: &str) -> Result<(), ClusterError> {
        let options = RenameContainerOptionsBuilder::default().name(new_name).build();
        self.inner.rename_container(name, options).await.map_err(|err| {
            ClusterError::RenameContainer { container: name.to_owned(), source: boxed(err) }
        })
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
        let ips = settings
            .networks
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(network, endpoint)| {
                let running = endpoint.ip_address.filter(|ip| !ip.is_empty());
                let configured = endpoint.ipam_config.and_then(|ipam| ipam.ipv4_address);
                Some((network, running.or(configured).filter(|ip| !ip.is_empty())?))
            })
            .collect();
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
            ips,
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
        self.collect_logs(container, options).await
    }

    async fn collect_logs(
        &self,
        container: &str,
        options: bollard::query_parameters::LogsOptions,
    ) -> Result<String, ClusterError> {
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

    /// The container's stdout and stderr from `since` (seconds since the epoch,
    /// with a fraction) to now, line by line with Docker's receive times.
    pub async fn logs_since(
        &self,
        container: &str,
        since: f64,
    ) -> Result<Vec<LogLine>, ClusterError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(i32::try_from(since.floor() as i64 - 1).unwrap_or(i32::MAX))
            .build();
        let text = self.collect_logs(container, options).await?;
        Ok(text
            .lines()
            .map(LogLine::parse)
            .filter(|line| line.at.is_none_or(|at| at >= since))
            .collect())
    }

    /// Follows the container's stdout and stderr from `since` (seconds since the
    /// epoch) on, line by line, each line with Docker's own receive time: the
    /// stream ends when the container stops. Lines are whole (Docker's chunks are
    /// split and joined here).
    pub fn follow_logs(
        &self,
        container: &str,
        since: i64,
    ) -> impl Stream<Item = Result<LogLine, ClusterError>> + Send + 'static {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(true)
            .timestamps(true)
            .since(i32::try_from(since).unwrap_or(i32::MAX))
            .build();
        let name = container.to_owned();
        let chunks = self.inner.logs(container, Some(options));
        futures::stream::unfold(
            (chunks, String::new(), std::collections::VecDeque::<LogLine>::new()),
            move |(mut chunks, mut partial, mut ready)| {
                let name = name.clone();
                async move {
                    loop {
                        if let Some(line) = ready.pop_front() {
                            return Some((Ok(line), (chunks, partial, ready)));
                        }
                        match chunks.next().await {
                            Some(Ok(chunk)) => {
                                partial.push_str(&chunk.to_string());
                                while let Some(end) = partial.find('\n') {
                                    let line: String = partial.drain(..=end).collect();
                                    ready.push_back(LogLine::parse(line.trim_end()));
                                }
                            }
                            Some(Err(err)) => {
                                let err =
                                    ClusterError::Logs { container: name, source: boxed(err) };
                                return Some((Err(err), (chunks, partial, ready)));
                            }
                            None if partial.is_empty() => return None,
                            None => {
                                let line = LogLine::parse(partial.trim_end());
                                partial.clear();
                                return Some((Ok(line), (chunks, partial, ready)));
                            }
                        }
                    }
                }
            },
        )
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

/// One line of a followed log: Docker's receive time and the text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogLine {
    /// Seconds since the epoch (with nanoseconds) when Docker read the line, or
    /// `None` when the line carried no timestamp.
    pub at: Option<f64>,
    pub text: String,
}

impl LogLine {
    /// Splits Docker's `2026-12-07T14:33:56.043123456Z text` prefix off.
    fn parse(line: &str) -> LogLine {
        let parsed = line.split_once(' ').and_then(|(stamp, text)| {
            let at =
                time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                    .ok()?;
            Some(LogLine {
                at: Some(at.unix_timestamp_nanos() as f64 / 1e9),
                text: text.to_owned(),
            })
        });
        parsed.unwrap_or_else(|| LogLine { at: None, text: line.to_owned() })
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

fn service_facts(service: bollard::models::Service) -> ServiceFacts {
    let spec = service.spec.unwrap_or_default();
    let template = spec.task_template.unwrap_or_default();
    let node_id = template
        .placement
        .and_then(|placement| placement.constraints)
        .unwrap_or_default()
        .iter()
        .find_map(|constraint| constraint.strip_prefix("node.id==").map(str::to_owned));
    let published = spec
        .endpoint_spec
        .and_then(|endpoint| endpoint.ports)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|port| port.published_port.and_then(|port| u16::try_from(port).ok()))
        .collect();
    ServiceFacts {
        name: spec.name.unwrap_or_default(),
        id: service.id.unwrap_or_default(),
        labels: spec.labels.unwrap_or_default(),
        node_id,
        published,
    }
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

#[cfg(test)]
mod tests {
    use super::LogLine;

    #[test]
    fn a_followed_line_keeps_dockers_time_apart_from_its_text() {
        let line = LogLine::parse(
            "2026-12-07T14:33:56.043123456Z 14:33:56.043 [main] INFO x - LEADING - LEADER ELECTION TOOK - 7 MS",
        );
        assert_eq!(line.text, "14:33:56.043 [main] INFO x - LEADING - LEADER ELECTION TOOK - 7 MS");
        let at = line.at.unwrap();
        assert!((at - 1_796_654_036.043_123).abs() < 1e-3, "{at}");
        assert_eq!(LogLine::parse("no stamp").at, None);
    }
}
