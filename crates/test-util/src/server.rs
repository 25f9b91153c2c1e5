//! The real server, started in-process on 127.0.0.1 port 0 with a manual clock, and
//! clients that talk to it over real mTLS.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use evergreen_api::client::Client;
use std::collections::BTreeMap;

use evergreen_api::{
    CaRotateRequest, CaRotation, CertificateBundle, Clock as _, EnrollRequest, ManualClock, Role,
    TokenRequest, TokenResponse, decode_pem, encode_pem,
};
use evergreen_pki::hierarchy::ROLE_CAS;
use evergreen_pki::{
    CertificateAuthority, CertificateDer, DistinguishedName, Duration, KeyType, OffsetDateTime,
    PrivateKey, SubjectAltName, pem,
};
use evergreen_server::{Config, RunningServer};

pub const LOOPBACK_ANY_PORT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A running server in a temporary data dir.
pub struct TestServer {
    pub server: RunningServer,
    pub clock: ManualClock,
    pub data_dir: PathBuf,
    /// The PostgreSQL datastore it shares; `None`: SQLite in the data dir.
    pub datastore: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("url", &self.server.url)
            .finish()
    }
}

/// A client certificate the server issued, with its key.
#[derive(Debug)]
pub struct Credential {
    pub key: PrivateKey,
    /// Leaf first, then the CA chain (`crt`).
    pub chain: Vec<CertificateDer<'static>>,
    pub bundle: CertificateBundle,
}

impl Credential {
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// Writes `crt` and the key as `NAME.crt` / `NAME.key` in `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let crt = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&crt, decode_pem(&self.bundle.crt).expect("crt")).expect("write crt");
        std::fs::write(&key, self.key.to_pem()).expect("write key");
        (crt, key)
    }
}

impl TestServer {
    /// A fresh server whose clock starts at the wall clock's time, so external tools that
    /// read the wall clock (curl, openssl) agree with it until a test moves it.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut server = Self::start_in(&data_dir, ManualClock::new(crate::wall_clock()))
            .await
            .expect("server starts");
        server._dir = Some(dir);
        server
    }

    /// A fresh server on a fresh PostgreSQL database (see [`crate::postgres`]).
    pub async fn start_postgres() -> Self {
        let datastore = crate::postgres::fresh_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let clock = ManualClock::new(crate::wall_clock());
        let mut server =
            Self::start_with(&data_dir, clock, LOOPBACK_ANY_PORT, Some(datastore), None)
                .await
                .expect("server starts");
        server._dir = Some(dir);
        server
    }

    /// A replica of this server: its own data dir (removed with `dir`), the same
    /// PostgreSQL datastore and clock, joined with this server's token.
    pub async fn start_replica(&self, dir: &Path) -> anyhow::Result<Self> {
        let token = std::fs::read_to_string(self.data_dir.join("server/token"))?;
        Self::start_with(
            dir,
            self.clock.clone(),
            LOOPBACK_ANY_PORT,
            self.datastore.clone(),
            Some(token),
        )
        .await
    }

    /// A server on an existing data dir (restart), with `clock`.
    pub async fn start_in(data_dir: &Path, clock: ManualClock) -> anyhow::Result<Self> {
        Self::start_on(data_dir, clock, LOOPBACK_ANY_PORT).await
    }

    /// As [`TestServer::start_in`], listening on `addr` (a restart on the same port).
    pub async fn start_on(
        data_dir: &Path,
        clock: ManualClock,
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::start_with(data_dir, clock, addr, None, None).await
    }

    /// A server on `datastore` (`None`: SQLite in the data dir), joining with
    /// `join_token` when given.
    pub async fn start_with(
        data_dir: &Path,
        clock: ManualClock,
        addr: std::net::SocketAddr,
        datastore: Option<String>,
        join_token: Option<String>,
    ) -> anyhow::Result<Self> {
        let failpoints = Arc::default();
        Self::start_failing(data_dir, clock, addr, datastore, join_token, failpoints).await
    }

    /// As [`TestServer::start_with`], with `failpoints` armed from the start.
    pub async fn start_failing(
        data_dir: &Path,
        clock: ManualClock,
        addr: std::net::SocketAddr,
        datastore: Option<String>,
        join_token: Option<String>,
        failpoints: Arc<evergreen_server::change::Failpoints>,
    ) -> anyhow::Result<Self> {
        let mut config = Config::new(data_dir.to_owned(), addr, Arc::new(clock.clone()));
        config.datastore = datastore.clone();
        config.join_token = join_token;
        config.failpoints = failpoints;
        let server = evergreen_server::start(config).await?;
        Ok(TestServer {
            server,
            clock,
            data_dir: data_dir.to_owned(),
            datastore,
            _dir: None,
        })
    }

    /// Stops this server and starts it again on the same data dir, datastore and port.
    pub async fn restart(self) -> anyhow::Result<Self> {
        self.restart_after(async {}).await
    }

    /// As [`TestServer::restart`], running `while_down` while the server is stopped.
    pub async fn restart_after(self, while_down: impl Future<Output = ()>) -> anyhow::Result<Self> {
        let (addr, clock, data_dir, datastore) = (
            self.server.addr,
            self.clock.clone(),
            self.data_dir.clone(),
            self.datastore.clone(),
        );
        let dir = self.shutdown().await;
        while_down.await;
        let mut server = Self::start_with(&data_dir, clock, addr, datastore, None).await?;
        server._dir = dir;
        Ok(server)
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// The trust bundle the server wrote for the CLI.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        pem::parse_certificates(
            "ca.crt",
            &std::fs::read(self.data_dir.join("ca.crt")).expect("ca.crt"),
        )
        .expect("bundle")
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.server.state.cluster.load().root.clone()
    }

    fn client_for(
        &self,
        identity: Option<(
            Vec<CertificateDer<'static>>,
            evergreen_pki::PrivateKeyDer<'static>,
        )>,
    ) -> Client {
        Client::with_clock(
            self.url(),
            &self.roots(),
            identity,
            Arc::new(self.clock.clone()),
        )
        .expect("client")
    }

    pub fn anonymous(&self) -> Client {
        self.client_for(None)
    }

    /// A client with the admin credential from the data dir.
    pub fn admin(&self) -> Client {
        let chain = pem::parse_certificates(
            "admin.crt",
            &std::fs::read(self.data_dir.join("admin.crt")).expect("admin.crt"),
        )
        .expect("admin chain");
        let key = PrivateKey::from_pem(
            "admin.key",
            &std::fs::read(self.data_dir.join("admin.key")).expect("admin.key"),
        )
        .expect("admin key");
        self.client_for(Some((chain, key.der().clone_key())))
    }

    pub fn client(&self, credential: &Credential) -> Client {
        self.client_for(Some((
            credential.chain.clone(),
            credential.key.der().clone_key(),
        )))
    }

    /// `POST /v1/tokens` with `request`.
    pub async fn token_with(
        &self,
        request: &TokenRequest,
    ) -> Result<TokenResponse, evergreen_api::client::ClientError> {
        self.admin().json("POST", "/v1/tokens", Some(request)).await
    }

    /// A single-use join token for the node `node`, made through the API.
    pub async fn node_token(&self, node: &str) -> String {
        let request = TokenRequest {
            role: Role::Node,
            node: Some(node.to_owned()),
            description: "test".into(),
            ..TokenRequest::default()
        };
        self.token_with(&request).await.expect("node token").token
    }

    /// A single-use join token for an app with `subject`, made through the API.
    pub async fn app_token(&self, subject: &DistinguishedName) -> String {
        let request = TokenRequest {
            role: Role::App,
            subject: Some(subject.to_string()),
            description: "test".into(),
            ..TokenRequest::default()
        };
        self.token_with(&request).await.expect("app token").token
    }

    /// Enrolls a fresh key for `subject` with a new token of `role` bound to it (a node
    /// is named by the subject's CN).
    pub async fn enroll(&self, role: Role, subject: &DistinguishedName) -> Credential {
        let token = match role {
            Role::Node => {
                let cn = subject
                    .get(&evergreen_pki::name::NameAttribute::CommonName)
                    .expect("a node subject has a CN");
                self.node_token(cn).await
            }
            _ => self.app_token(subject).await,
        };
        self.enroll_with(&token, subject, &[])
            .await
            .expect("enroll")
    }

    pub async fn enroll_with(
        &self,
        token: &str,
        subject: &DistinguishedName,
        sans: &[SubjectAltName],
    ) -> Result<Credential, evergreen_api::client::ClientError> {
        let key = PrivateKey::generate(KeyType::EcP256).expect("key");
        let csr = evergreen_pki::csr::build(&key, subject, sans).expect("csr");
        let request = EnrollRequest {
            token: token.to_owned(),
            csr: encode_pem(&pem::encode("CERTIFICATE REQUEST", &csr)),
        };
        let bundle: CertificateBundle = self
            .anonymous()
            .json("POST", "/v1/enroll", Some(&request))
            .await?;
        let chain = pem::parse_certificates("crt", &decode_pem(&bundle.crt).expect("base64"))
            .expect("chain");
        self.assert_client_chain(&chain);
        Ok(Credential { key, chain, bundle })
    }

    /// Verifies a client certificate chain the server returned (leaf first) with webpki
    /// and with `openssl verify`, against the server's root at the server's time.
    pub fn assert_client_chain(&self, chain: &[CertificateDer<'static>]) {
        use evergreen_api::Clock as _;
        let usage = evergreen_pki::certificate::Usage::ClientAuth;
        crate::assert_chain(&self.root(), chain, usage, self.clock.now());
    }

    /// The cluster's current root with its key, read the way `ca generate --root-from`
    /// does.
    pub async fn current_root_ca(&self) -> CertificateAuthority {
        let (root, key) = evergreen_server::current_root(&self.data_dir, self.datastore.as_deref())
            .await
            .expect("current root");
        CertificateAuthority::from_parts(vec![root], key.expect("root key")).expect("root CA")
    }

    /// A new root, and that root cross-signed by the current one.
    pub async fn new_cross_signed_root(&self) -> (CertificateAuthority, CertificateDer<'static>) {
        let now = self.clock.now();
        let root = CertificateAuthority::new_root(
            DistinguishedName::common_name(format!("next-root@{}", now.unix_timestamp())),
            PrivateKey::generate(KeyType::EcP256).expect("key"),
            Duration::days(3650),
            now,
        )
        .expect("root");
        let cross = evergreen_pki::cross_sign::cross_sign(
            root.certificate(),
            &self.current_root_ca().await,
            now,
        )
        .expect("cross-signed root");
        (root, cross)
    }

    /// `PUT /v1/ca/rotate` with `files`.
    pub async fn rotate_ca(
        &self,
        files: &BTreeMap<String, String>,
        force: bool,
    ) -> Result<CaRotation, evergreen_api::client::ClientError> {
        self.admin()
            .json(
                "PUT",
                &format!("/v1/ca/rotate?force={force}"),
                Some(&CaRotateRequest {
                    files: files.clone(),
                }),
            )
            .await
    }

    /// Makes the step `step` of the next change fail (see the server's `change` module).
    pub fn arm(&self, step: &str) {
        self.server.state.failpoints.arm(step);
    }

    /// The datastore's whole content as text: `sqlite3 … .dump` of the SQLite file, or
    /// every row of every PostgreSQL table.
    pub async fn dump_datastore(&self) -> String {
        match &self.datastore {
            Some(url) => crate::postgres::dump(url).await,
            None => dump_sqlite(&self.data_dir.join("server/db/state.db")),
        }
    }

    /// Every file of the data dir but the datastore's, with its contents and mode. The
    /// datastore's files are not even opened: closing a file this process opened would
    /// drop the POSIX locks SQLite holds on it, and another process would then take the
    /// write-ahead log for its own and remove it.
    pub fn files(&self) -> Vec<(String, Vec<u8>, u32)> {
        tree_except(&self.data_dir, &self.data_dir.join("server/db"))
    }

    pub async fn shutdown(self) -> Option<tempfile::TempDir> {
        self.server.shutdown().await;
        self._dir
    }
}

/// New role CAs under `signer` as staged files: each `<role>.crt` the CA followed by
/// `extra` (the root, or the cross-signed new root), each `<role>.key` its key.
pub fn stage_role_cas(
    signer: &CertificateAuthority,
    extra: &[CertificateDer<'static>],
    now: OffsetDateTime,
) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for role in ROLE_CAS {
        let name =
            DistinguishedName::common_name(format!("rotated-{role}@{}", now.unix_timestamp()));
        let key = PrivateKey::generate(KeyType::EcP256).expect("key");
        let ca = signer
            .new_intermediate(name, key, 0, Duration::days(3650), now)
            .expect("role CA");
        let mut bundle = vec![ca.certificate().clone()];
        bundle.extend(extra.iter().cloned());
        files.insert(format!("{role}.crt"), pem::encode_certificates(&bundle));
        files.insert(format!("{role}.key"), ca.key().to_pem());
    }
    files
}

/// `sqlite3 DB .dump`, with the SQLite command line (Debian's `sqlite3`).
pub fn dump_sqlite(db: &Path) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(".dump")
        .output()
        .expect("the sqlite3 command is needed (apt-get install sqlite3; ./scripts/test does)");
    assert!(
        out.status.success(),
        "sqlite3 .dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a dump is text")
}

/// Every file and directory under `dir`, by relative path, with contents and mode
/// (directories with no contents): to show a directory tree unchanged, byte for byte.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    tree_except(dir, Path::new(""))
}

fn tree_except(dir: &Path, skip: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == skip {
                continue;
            }
            let name = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.push((format!("{name}/"), Vec::new(), mode));
                pending.push(path);
            } else {
                out.push((name, std::fs::read(&path).unwrap_or_default(), mode));
            }
        }
    }
    out.sort();
    out
}
