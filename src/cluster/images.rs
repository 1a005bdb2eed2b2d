//! ZooKeeper images built here from Debian packages, because no registry may be
//! reachable (not here, not in a user's CI). `cluster/build-rootfs.sh` makes the root
//! file system; we stream it as a tar into `docker import`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use fs4::fs_std::FileExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::docker::Docker;
use super::ClusterError;

/// The recipe, compiled in so the binary builds images from any directory.
const BUILD_SCRIPT: &str = include_str!("../../cluster/build-rootfs.sh");

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
        if force || !docker.image_exists(&image_for_version(version)).await? {
            missing.push(*version);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let _lock = lock_builds(progress).await?;
    for version in missing {
        let image = image_for_version(version);
        // Another process may have built it while we waited for the lock.
        if !force && docker.image_exists(&image).await? {
            progress(&format!("{image}: built by another process meanwhile"));
            continue;
        }
        build_image(&docker, version, progress).await?;
    }
    Ok(())
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
    version: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), ClusterError> {
    let (_, suite, jre) = SUPPORTED_VERSIONS
        .iter()
        .find(|(v, _, _)| *v == version)
        .copied()
        .expect("checked by ensure_images");
    let image = image_for_version(version);
    let build_err = |message: String| ClusterError::ImageBuild { image: image.clone(), message };
    check_tools()?;
    let started = Instant::now();
    progress(&format!(
        "{image}: building from Debian {suite} ({jre}, libzookeeper-java); takes a few minutes"
    ));

    let work = std::env::temp_dir().join(format!("zkmq-image-{version}-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .map_err(ClusterError::io(format!("creating {}", work.display())))?;
    let script = work.join("build-rootfs.sh");
    std::fs::write(&script, BUILD_SCRIPT)
        .map_err(ClusterError::io(format!("writing {}", script.display())))?;
    let root = work.join("root");
    let result = async {
        run_recipe(&script, version, suite, jre, &root, progress).await.map_err(build_err)?;
        progress(&format!("{image}: importing the root file system into Docker"));
        let changes = vec![
            "LABEL zkmq.image=zookeeper".to_owned(),
            format!("LABEL zkmq.zk_version={version}"),
            format!("LABEL zkmq.debian={suite}"),
            "ENV LANG=C.UTF-8".to_owned(),
            "CMD [\"/bin/bash\"]".to_owned(),
        ];
        docker.import_image(REPOSITORY, version, changes, tar_stream(root.clone())).await?;
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
    version: &str,
    suite: &str,
    jre: &str,
    root: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), String> {
    let mut child = tokio::process::Command::new("bash")
        .arg(script)
        .arg(suite)
        .arg(jre)
        .arg(root)
        .arg(version)
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

/// The root directory as a tar stream, written by a blocking thread in 1 MiB
/// chunks, so a 350 MB root never sits in memory.
fn tar_stream(
    root: PathBuf,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    std::thread::spawn(move || {
        let writer = ChunkWriter { sender: sender.clone(), buffer: Vec::with_capacity(CHUNK) };
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        let result = builder
            .append_dir_all(".", &root)
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

struct ChunkWriter {
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
