//! ZooKeeper images built here from Debian packages, because no registry may be
//! reachable (not here, not in a user's CI). `cluster/build-rootfs.sh` makes the root
//! file system; we stream it as a tar into `docker import`. The simulated swarm
//! hosts' image (Debian's docker.io) is built the same way.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use fs4::fs_std::FileExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::docker::Docker;
use super::ClusterError;

/// The recipe, compiled in so the binary builds images from any directory.
const BUILD_SCRIPT: &str = include_str!("../../cluster/build-rootfs.sh");
/// The clock-skew fault's shim, which the recipe compiles into each image.
const CLOCK_SHIM: &str = include_str!("../../cluster/zkmq-clock.c");

/// Versions we can build, with the Debian release and JRE that ship them.
pub const SUPPORTED_VERSIONS: &[(&str, &str, &str)] = &[
    ("3.8.0", "bookworm", "openjdk-17-jre-headless"),
    ("3.9.3", "trixie", "openjdk-21-jre-headless"),
    // Debian testing (forky): carries the fixes for transactions lost by a node
    // that crashes while syncing with a new leader (ZOOKEEPER-4785, in 3.8.4 and
    // 3.9.2) and for the hole a stale follower spreads (ZOOKEEPER-4925, 3.9.4).
    // The recipe pins the package version: when forky moves on, the build fails
    // rather than tag another version 3.9.6.
    ("3.9.6", "forky", "openjdk-21-jre-headless"),
];

const REPOSITORY: &str = "zkmq/zookeeper";

/// The image of the simulated swarm hosts (`zkmq cluster hosts up`): a Debian root
/// with docker.io, whose dockerd runs inside each host container.
pub const HOST_IMAGE: &str = "zkmq/swarm-host:bookworm";
const HOST_REPOSITORY: &str = "zkmq/swarm-host";
const HOST_SUITE: &str = "bookworm";

/// The recipe's version, carried by every image we build as the label
/// [`RECIPE_LABEL`]. An image built by an older recipe (or before the label
/// existed) is rebuilt by [`ensure_images`], about two minutes per version.
/// History: 1, the first recipe; 2, added libfaketime (clock faults); 3, replaced
/// it by our own clock shim (`cluster/zkmq-clock.c`), as libfaketime made
/// ZooKeeper twenty times slower.
pub const RECIPE_VERSION: u32 = 3;
/// The label that carries [`RECIPE_VERSION`].
pub const RECIPE_LABEL: &str = "zkmq.recipe";

/// `zkmq/zookeeper:<version>`.
pub fn image_for_version(version: &str) -> String {
    format!("{REPOSITORY}:{version}")
}

/// Makes sure `zkmq/zookeeper:<v>` exists for every version, building what is
/// missing (or everything, with `force`). Safe to call from parallel processes: a
/// file lock makes one build and the others find the tag afterwards.
pub async fn ensure_images(
    versions: &[&str],
    force: bool,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ClusterError> {
    for version in versions {
        if !SUPPORTED_VERSIONS.iter().any(|(v, _, _)| v == version) {
            return Err(ClusterError::InvalidSpec(format!(
                "ZooKeeper {version}: we build images for {}; name another image with --image",
                SUPPORTED_VERSIONS.iter().map(|(v, _, _)| *v).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let docker = Docker::connect().await?;
    let mut missing = Vec::new();
    for version in versions {
        let image = image_for_version(version);
        match recipe_of(&docker, &image).await? {
            _ if force => missing.push(*version),
            None => missing.push(*version),
            Some(recipe) if recipe < RECIPE_VERSION => {
                progress(&format!(
                    "{image} was built by recipe {recipe}, this zkmq's is {RECIPE_VERSION} \
                     (cluster/build-rootfs.sh): rebuilding it"
                ));
                missing.push(*version);
            }
            Some(_) => {}
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let _lock = lock_builds(progress).await?;
    for version in missing {
        let image = image_for_version(version);
        // Another process may have built it while we waited for the lock.
        if !force && recipe_of(&docker, &image).await?.is_some_and(|r| r >= RECIPE_VERSION) {
            progress(&format!("{image}: built by another process meanwhile"));
            continue;
        }
        build_image(&docker, &zookeeper_recipe(version), progress).await?;
    }
    Ok(())
}

/// Makes sure [`HOST_IMAGE`] exists (rebuilds it with `force`), under the same
/// lock as the ZooKeeper images.
pub async fn ensure_host_image(
    force: bool,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ClusterError> {
    let docker = Docker::connect().await?;
    if !force && docker.image_exists(HOST_IMAGE).await? {
        return Ok(());
    }
    let _lock = lock_builds(progress).await?;
    if !force && docker.image_exists(HOST_IMAGE).await? {
        progress(&format!("{HOST_IMAGE}: built by another process meanwhile"));
        return Ok(());
    }
    let recipe = Recipe {
        repository: HOST_REPOSITORY,
        tag: HOST_SUITE.to_owned(),
        args: vec!["--docker-host".to_owned(), HOST_SUITE.to_owned()],
        about: format!("Debian {HOST_SUITE}, docker.io"),
        labels: vec!["LABEL zkmq.image=swarm-host".to_owned()],
    };
    build_image(&docker, &recipe, progress).await
}

/// What to build: `build-rootfs.sh <args> <root> [<after>]`, imported as
/// `repository:tag` with `labels` (Dockerfile LABEL lines).
struct Recipe {
    repository: &'static str,
    tag: String,
    /// the recipe's arguments before the root directory
    args: Vec<String>,
    /// for the progress line: what goes in
    about: String,
    labels: Vec<String>,
}

impl Recipe {
    fn image(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

fn zookeeper_recipe(version: &str) -> Recipe {
    let (_, suite, jre) = SUPPORTED_VERSIONS
        .iter()
        .find(|(v, _, _)| *v == version)
        .copied()
        .expect("checked by ensure_images");
    Recipe {
        repository: REPOSITORY,
        tag: version.to_owned(),
        args: vec![suite.to_owned(), jre.to_owned()],
        about: format!("Debian {suite} ({jre}, libzookeeper-java)"),
        labels: vec![
            "LABEL zkmq.image=zookeeper".to_owned(),
            format!("LABEL zkmq.zk_version={version}"),
            format!("LABEL zkmq.debian={suite}"),
            format!("LABEL {RECIPE_LABEL}={RECIPE_VERSION}"),
        ],
    }
}

/// The recipe version an image was built by: `None` when there is no such image,
/// `Some(1)` for one built before images carried the label.
async fn recipe_of(docker: &Docker, image: &str) -> Result<Option<u32>, ClusterError> {
    Ok(docker
        .image_labels(image)
        .await?
        .map(|labels| labels.get(RECIPE_LABEL).and_then(|recipe| recipe.parse().ok()).unwrap_or(1)))
}

/// Held while building; released (the file closed) on drop.
struct BuildLock {
    _file: std::fs::File,
}

async fn lock_builds(progress: &(dyn Fn(&str) + Send + Sync)) -> Result<BuildLock, ClusterError> {
    let path = std::env::temp_dir().join("zkmq-image-build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ClusterError::io(format!("opening {}", path.display())))?;
    let got = FileExt::try_lock_exclusive(&file)
        .map_err(ClusterError::io(format!("locking {}", path.display())))?;
    if got {
        return Ok(BuildLock { _file: file });
    }
    progress(&format!("another process is building images (lock {}); waiting", path.display()));
    // Builds take minutes; bounded so a wedged builder is reported, not waited on forever.
    let waited = tokio::time::timeout(
        std::time::Duration::from_secs(30 * 60),
        tokio::task::spawn_blocking(move || FileExt::lock_exclusive(&file).map(|()| file)),
    )
    .await
    .map_err(|_| ClusterError::Timeout {
        waited_for: format!("the image build lock {} (30 min)", path.display()),
    })?
    .map_err(|err| ClusterError::Io {
        context: "waiting for the image build lock".to_owned(),
        source: std::io::Error::other(err),
    })?
    .map_err(ClusterError::io(format!("locking {}", path.display())))?;
    Ok(BuildLock { _file: waited })
}

async fn build_image(
    docker: &Docker,
    recipe: &Recipe,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ClusterError> {
    let image = recipe.image();
    let build_err = |message: String| ClusterError::ImageBuild { image: image.clone(), message };
    check_tools()?;
    let started = Instant::now();
    progress(&format!("{image}: building from {}; takes a few minutes", recipe.about));

    let work = std::env::temp_dir().join(format!(
        "zkmq-image-{}-{}-{}",
        recipe.repository.replace('/', "-"),
        recipe.tag,
        std::process::id()
    ));
    std::fs::create_dir_all(&work)
        .map_err(ClusterError::io(format!("creating {}", work.display())))?;
    let script = work.join("build-rootfs.sh");
    std::fs::write(&script, BUILD_SCRIPT)
        .map_err(ClusterError::io(format!("writing {}", script.display())))?;
    let shim = work.join("zkmq-clock.c");
    std::fs::write(&shim, CLOCK_SHIM)
        .map_err(ClusterError::io(format!("writing {}", shim.display())))?;
    let root = work.join("root");
    let result = async {
        let mut args = recipe.args.clone();
        args.push(root.to_string_lossy().into_owned());
        if recipe.repository == REPOSITORY {
            args.push(recipe.tag.clone());
        }
        run_recipe(&script, &args, progress).await.map_err(build_err)?;
        progress(&format!("{image}: importing the root file system into Docker"));
        let mut changes = recipe.labels.clone();
        changes.push("ENV LANG=C.UTF-8".to_owned());
        changes.push("CMD [\"/bin/bash\"]".to_owned());
        let dir = root.clone();
        let tar = tar_stream(move |builder| builder.append_dir_all(".", &dir));
        docker.import_image(recipe.repository, &recipe.tag, changes, tar).await?;
        let size = docker.image_size(&image).await?.unwrap_or(0);
        progress(&format!(
            "{image}: built in {:.0} s, {} MB",
            started.elapsed().as_secs_f64(),
            size / 1_000_000
        ));
        Ok(())
    }
    .await;
    // The root holds device nodes and a few hundred MB; never leave it behind.
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn check_tools() -> Result<(), ClusterError> {
    let found = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
            || Path::new("/usr/sbin").join(tool).is_file()
    };
    if !found("debootstrap") {
        return Err(ClusterError::MissingTool {
            tool: "debootstrap".to_owned(),
            install: "apt-get install debootstrap (or run ./cluster/setup-host.sh)".to_owned(),
        });
    }
    if !found("bash") {
        return Err(ClusterError::MissingTool {
            tool: "bash".to_owned(),
            install: "apt-get install bash".to_owned(),
        });
    }
    Ok(())
}

/// Runs the recipe, forwarding its progress lines; on failure returns its output.
async fn run_recipe(
    script: &Path,
    args: &[String],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), String> {
    let mut child = tokio::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut text = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push(line);
        }
        text.join("\n")
    });
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        progress(&line);
    }
    // debootstrap plus apt: minutes; a stuck mirror should fail, not hang.
    let status = tokio::time::timeout(std::time::Duration::from_secs(20 * 60), child.wait())
        .await
        .map_err(|_| "the recipe ran for more than 20 minutes".to_owned())?
        .map_err(|err| format!("waiting for the recipe: {err}"))?;
    let errors = errors.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {status}:\n{errors}", script.display()))
    }
}

/// A tar stream of what `fill` appends (a root directory, a binary), written by a
/// blocking thread in 1 MiB chunks, so a 350 MB root never sits in memory.
pub(super) fn tar_stream<F>(
    fill: F,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    F: FnOnce(&mut tar::Builder<ChunkWriter>) -> std::io::Result<()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    std::thread::spawn(move || {
        let writer = ChunkWriter { sender: sender.clone(), buffer: Vec::with_capacity(CHUNK) };
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        // Docker unpacks no GNU sparse entries ("unhandled tar header type 83").
        builder.sparse(false);
        let result = fill(&mut builder)
            .and_then(|()| builder.into_inner())
            .and_then(|mut writer| writer.flush());
        if let Err(err) = result {
            let _ = sender.blocking_send(Err(err));
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

const CHUNK: usize = 1 << 20;

pub(super) struct ChunkWriter {
    sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK)));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("docker stopped reading the image tar"))
    }
}
