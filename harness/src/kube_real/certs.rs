//! The key material a test API server needs, made at start with `openssl` in the server's
//! temp dir: a CA, a serving certificate for `127.0.0.1`/`localhost` signed by it, and the
//! ServiceAccount signing key pair. ECDSA P-256 throughout (fast to generate).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::KubeRealError;

/// Paths of the files made in `dir`.
#[derive(Clone, Debug)]
pub struct Certs {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The ServiceAccount token signing key (private) and its public half.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), KubeRealError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| KubeRealError::Setup(format!("cannot run openssl {args:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(KubeRealError::Setup(format!(
            "openssl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl Certs {
    /// Makes the CA, the serving certificate and the ServiceAccount keys in `dir`.
    pub fn make(dir: &Path) -> Result<Certs, KubeRealError> {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=twill-test-ca",
        ]);
        openssl(dir, &ca)?;
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=kube-apiserver",
        ]);
        openssl(dir, &csr)?;
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| KubeRealError::Setup(format!("cannot write server.ext: {e}")))?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        )?;
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "sa.key",
            ],
        )?;
        openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        Ok(Certs {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        })
    }
}
