"""A local stand-in for the Hugging Face Hub API that the REAL `huggingface_hub` client talks to.

It serves, on 127.0.0.1 (a free port), the endpoints that `HfApi.create_repo`, `create_branch` and `create_commit`
call: repo creation, branches, README YAML validation, `preupload` (regular vs LFS upload mode), the git-LFS batch
API (basic transfer + verify) and the NDJSON commit. Each repo keeps its files per revision (branch -> commit ->
{path: bytes}); uploaded LFS objects live in a separate store, so a failed commit leaves a branch untouched, as on
the Hub. Failures can be injected per endpoint (`hub.fail("commit", 500)`).

```python
>>> from huggingface_hub import HfApi, CommitOperationAdd
>>> with FakeHub() as hub:  # doctest: +SKIP
...     api = HfApi(endpoint=hub.url, token="hf_fake")
...     api.create_repo("user/model", private=True)
...     api.create_commit("user/model", [CommitOperationAdd("a.txt", b"hi")], commit_message="add a")
...     hub.files("user/model")
{'a.txt': b'hi'}
```

Xet: `huggingface_hub` >= 1.0 uploads LFS content through Xet whenever `hf_xet` is installed; that choice is made
on the client (not negotiated with the server), and this fake does not speak Xet's CAS protocol. Clients must run
with `HF_HUB_DISABLE_XET=1` (or `huggingface_hub.constants.HF_HUB_DISABLE_XET = True`); the Xet token endpoint
answers 501 with that fix, so a forgotten setting fails loudly instead of hanging.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO = r"(?P<namespace>[\w.-]+)/(?P<name>[\w.-]+)"
KIND = r"(?P<kind>models|spaces)"  # a Space is stored under "spaces/<repo id>" (see `files`)
# (method, regex over the raw, still URL-quoted path, endpoint name). Revisions arrive quoted (`quote(rev, safe="")`).
ROUTES = [
    ("POST", r"/api/repos/create", "create_repo"),
    ("GET", r"/api/whoami-v2", "whoami"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", rf"/api/{KIND}/{REPO}(?:/revision/(?P<revision>[^/]+))?", "repo_info"),
    ("POST", rf"/api/{KIND}/{REPO}/branch/(?P<revision>[^/]+)", "create_branch"),
    ("POST", rf"/api/{KIND}/{REPO}/preupload/(?P<revision>[^/]+)", "preupload"),
    ("POST", rf"/api/{KIND}/{REPO}/commit/(?P<revision>[^/]+)", "commit"),
    ("GET", rf"/api/{KIND}/{REPO}/xet-write-token/(?P<revision>[^/]+)", "xet"),
    ("POST", rf"/api/{KIND}/{REPO}/xet-write-token/(?P<revision>[^/]+)", "xet"),
    ("POST", rf"/(?:(?P<lfs_kind>spaces)/)?{REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/fake-lfs/objects/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
    ("POST", r"/fake-lfs/verify", "lfs_verify"),
]
# Write endpoints need a token, as on the Hub.
AUTHENTICATED = {"create_repo", "whoami", "create_branch", "preupload", "commit", "lfs_batch", "xet"}
# What the Hub's default .gitattributes sends to LFS; binary content (a NUL byte in the first 512 bytes, as the
# Hub's sample check) and files >= 10 MB go to LFS too.
LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".onnx",
    ".msgpack",
    ".model",
    ".npy",
    ".npz",
    ".pkl",
    ".pickle",
    ".zip",
    ".gz",
    ".tar",
    ".parquet",
    ".arrow",
)
LFS_MIN_SIZE = 10 * 1024 * 1024


def git_blob_oid(data: bytes) -> str:
    """git's object id of a blob, which the Hub reports for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def upload_mode(path: str, size: int, sample: bytes) -> str:
    if path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample:
        return "lfs"
    return "regular"


@dataclass
class FakeFile:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_oid(self.data)


@dataclass
class FakeCommit:
    oid: str
    parent: str | None
    summary: str
    description: str
    files: dict[str, FakeFile]


@dataclass
class FakeRepo:
    repo_id: str
    private: bool
    commits: dict[str, FakeCommit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit oid


@dataclass
class RecordedRequest:
    endpoint: str
    method: str
    path: str
    query: dict[str, list[str]]
    json: dict | list | None
    token: str | None


class HubError(Exception):
    """An HTTP error answer: status, message, and the `X-Error-Code` the client maps to its exception classes."""

    def __init__(self, status: int, message: str, error_code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.error_code, self.extra = status, message, error_code, extra


class FakeHub:
    """A threaded HTTP server answering like the Hub. Use as a context manager, or `start()` / `stop()`.

    Args:
        tokens: accepted tokens; None accepts any non-empty bearer token.
    """

    def __init__(self, tokens: set[str] | None = None):
        self.tokens = tokens
        self.repos: dict[str, FakeRepo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, uploaded but not necessarily committed
        self.requests: list[RecordedRequest] = []
        self._failures: dict[str, list] = {}  # endpoint -> [status, remaining count or None for always]
        self._lock = threading.RLock()
        self._commit_counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not running: use `with FakeHub() as hub:` or call hub.start().")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_HubRequestHandler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------- assertions
    def fail(self, endpoint: str, status: int = 500, times: int | None = None) -> None:
        """Answer `endpoint` (a name from ROUTES, e.g. "commit", "preupload") with `status`, `times` times or always.

        The client retries 5xx with backoff on preupload / LFS endpoints (sleeping), but not on create_repo,
        create_branch or commit: fail those to keep tests fast.
        """
        known = {name for _, _, name in ROUTES}
        if endpoint not in known:
            raise ValueError(f"endpoint={endpoint!r} is unknown; use one of {sorted(known)}")
        with self._lock:
            self._failures[endpoint] = [status, times]

    def reset_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """{path: bytes} of `revision` (a branch or a commit oid); {} for a repo or branch that does not exist."""
        with self._lock:
            repo = self.repos.get(repo_id)
            if repo is None:
                return {}
            oid = repo.branches.get(revision, revision)
            commit = repo.commits.get(oid)
            return {} if commit is None else {path: file.data for path, file in commit.files.items()}

    def lfs_paths(self, repo_id: str, revision: str = "main") -> set[str]:
        """Paths stored through LFS at `revision`."""
        with self._lock:
            repo = self.repos[repo_id]
            commit = repo.commits[repo.branches.get(revision, revision)]
            return {path for path, file in commit.files.items() if file.lfs}

    def history(self, repo_id: str, revision: str = "main") -> list[FakeCommit]:
        """Commits of `revision`, newest first (the repo's initial empty commit last)."""
        with self._lock:
            repo = self.repos[repo_id]
            oid, commits = repo.branches[revision], []
            while oid is not None:
                commits.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return commits

    def calls(self, endpoint: str) -> list[RecordedRequest]:
        with self._lock:
            return [request for request in self.requests if request.endpoint == endpoint]

    # -------------------------------------------------------------------------------------------- the handlers
    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict | list | None]:
        split = urlsplit(raw_path)
        routes = [(name, re.fullmatch(pattern, split.path)) for verb, pattern, name in ROUTES if verb == method]
        endpoint, match = next(((name, match) for name, match in routes if match), (None, None))
        if match is None:
            raise HubError(404, f"fake hub: no route for {method} {split.path}")
        params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
        if "namespace" in params:
            params["repo_id"] = f"{params.pop('namespace')}/{params.pop('name')}"
            if "spaces" in (params.pop("kind", None), params.pop("lfs_kind", None)):
                params["repo_id"] = f"spaces/{params['repo_id']}"
        content_type = headers.get("Content-Type", "")
        payload = None
        if body and endpoint not in ("lfs_upload", "commit") and "json" in content_type:
            payload = json.loads(body)
        token = _bearer(headers)
        with self._lock:
            self.requests.append(RecordedRequest(endpoint, method, split.path, parse_qs(split.query), payload, token))
            failure = self._failures.get(endpoint)
            if failure is not None:
                status, times = failure
                if times is not None:
                    failure[1] -= 1
                    if failure[1] <= 0:
                        del self._failures[endpoint]
                raise HubError(status, f"fake hub: simulated failure of {endpoint}")
        if endpoint in AUTHENTICATED:
            self._authenticate(token)
        handler = getattr(self, f"_{endpoint}")
        with self._lock:
            return handler(params=params, payload=payload, body=body, query=parse_qs(split.query))

    def _authenticate(self, token: str | None) -> None:
        if not token or (self.tokens is not None and token not in self.tokens):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> FakeRepo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError(404, f"Repository Not Found for url: {self.url}/api/models/{repo_id}.", "RepoNotFound")
        return repo

    def _head(self, repo: FakeRepo, revision: str) -> FakeCommit:
        oid = repo.branches.get(revision, revision)
        if oid not in repo.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def _new_commit(self, repo: FakeRepo, parent: str | None, summary: str, description: str, files) -> FakeCommit:
        self._commit_counter += 1
        digest = hashlib.sha1(f"{repo.repo_id}:{parent}:{summary}:{self._commit_counter}".encode())
        for path in sorted(files):
            digest.update(f"{path}:{files[path].oid}".encode())
        commit = FakeCommit(digest.hexdigest(), parent, summary, description, files)
        repo.commits[commit.oid] = commit
        return commit

    def _create_repo(self, payload, **_):
        kind = payload.get("type", "model")
        if kind not in ("model", "space"):
            raise HubError(400, f"fake hub: only model and space repos are supported, got type={kind!r}")
        if kind == "space" and payload.get("sdk") not in ("gradio", "docker", "static"):
            raise HubError(400, f"fake hub: a Space needs an sdk, got {payload.get('sdk')!r}")
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        repo_id = f"spaces/{repo_id}" if kind == "space" else repo_id
        if repo_id in self.repos:
            # The Hub's 409 carries the repo url, which `create_repo(exist_ok=True)` returns.
            raise HubError(409, "You already created this model repo", url=f"{self.url}/{repo_id}")
        # `visibility` since huggingface_hub 1.x; `private` before.
        private = payload.get("visibility") == "private" or payload.get("private") is True
        repo = self.repos[repo_id] = FakeRepo(repo_id, private=private)
        repo.branches["main"] = self._new_commit(repo, None, "initial commit", "", {}).oid
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo.branches["main"][:24]}

    def _whoami(self, **_):
        return 200, {"type": "user", "name": "fake-user", "fullname": "Fake User", "orgs": []}

    def _repo_info(self, params, **_):
        repo = self._repo(params["repo_id"])
        commit = self._head(repo, params.get("revision", "main"))
        siblings = [{"rfilename": path} for path in sorted(commit.files)]
        return 200, {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "private": repo.private,
            "sha": commit.oid,
            "siblings": siblings,
            "tags": [],
            "downloads": 0,
            "likes": 0,
        }

    def _create_branch(self, params, payload, **_):
        repo = self._repo(params["repo_id"])
        branch = params["revision"]
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = self._head(repo, (payload or {}).get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        return 200, {}

    def _validate_yaml(self, payload, **_):
        errors = validate_card_metadata(payload.get("content", ""))
        if errors:
            return 400, {"errors": [{"message": message} for message in errors], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def _preupload(self, params, payload, query, **_):
        repo = self._repo(params["repo_id"])
        head = self._head(repo, params["revision"])
        files = []
        for item in payload["files"]:
            sample = base64.b64decode(item["sample"])
            existing = head.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": upload_mode(item["path"], item["size"], sample),
                    "shouldIgnore": False,
                    "oid": existing.oid if existing else None,
                }
            )
        return 200, {"files": files, "commitOid": head.oid}

    def _xet(self, **_):
        raise HubError(501, "fake hub speaks plain LFS only, not Xet: set HF_HUB_DISABLE_XET=1 in the client")

    def _lfs_batch(self, params, payload, **_):
        self._repo(params["repo_id"])
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, f"fake hub: only basic LFS uploads are supported, got {payload!r}")
        objects = []
        for item in payload["objects"]:
            answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.lfs_objects:  # already stored objects get no actions: the client skips them
                answer["actions"] = {
                    "upload": {"href": f"{self.url}/fake-lfs/objects/{item['oid']}", "header": {}},
                    "verify": {"href": f"{self.url}/fake-lfs/verify", "header": {}},
                }
            objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def _lfs_upload(self, params, body, **_):
        if hashlib.sha256(body).hexdigest() != params["oid"]:
            raise HubError(400, f"fake hub: uploaded content does not match oid {params['oid']}")
        self.lfs_objects[params["oid"]] = body
        return 200, None

    def _lfs_verify(self, payload, **_):
        data = self.lfs_objects.get(payload["oid"])
        if data is None or len(data) != payload["size"]:
            raise HubError(404, f"fake hub: LFS object {payload['oid']} ({payload['size']} bytes) was not uploaded")
        return 200, {}

    def _commit(self, params, body, query, **_):
        repo = self._repo(params["repo_id"])
        revision = params["revision"]
        if query.get("create_pr"):
            raise HubError(400, "fake hub: pull requests are not supported")
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision} (commits go to an existing branch)", "RevisionNotFound")
        parent = repo.commits[repo.branches[revision]]
        files = dict(parent.files)
        summary = description = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary, description = value["summary"], value.get("description", "")
                if value.get("parentCommit") not in (None, parent.oid):
                    raise HubError(412, f"parentCommit {value['parentCommit']} is not the head of {revision}")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"fake hub: unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = FakeFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                data = self.lfs_objects.get(value["oid"])
                if data is None:
                    raise HubError(400, f"LFS file {value['path']} ({value['oid']}) was not uploaded before commit")
                files[value["path"]] = FakeFile(data, lfs=True)
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: file for path, file in files.items() if not path.startswith(prefix)}
            else:
                raise HubError(400, f"fake hub: unknown commit operation {key!r}")
        if not summary:
            raise HubError(400, "commit summary is empty")
        commit = self._new_commit(repo, parent.oid, summary, description, files)
        repo.branches[revision] = commit.oid
        return 200, {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit.oid}",
            "hookOutput": "",
            "pullRequestUrl": None,
        }


def validate_card_metadata(content: str) -> list[str]:
    """Errors in a README's YAML front matter, checked like the Hub does for the parts a model card uses."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", content, flags=re.DOTALL)
    if match is None:
        return []  # no metadata is allowed (the Hub only warns)
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        return [f"YAML is invalid: {error}"]
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return ["metadata must be a YAML mapping"]
    errors = []
    for key in ("tags", "datasets"):
        values = metadata.get(key, [])
        if not (isinstance(values, list) and all(isinstance(value, str) for value in values)):
            errors.append(f'"{key}" must be a list of strings')
    for index, entry in enumerate(metadata.get("model-index") or []):
        if not isinstance(entry.get("name"), str):
            errors.append(f'"model-index[{index}].name" must be a string')
        for r, result in enumerate(entry.get("results") or []):
            where = f"model-index[{index}].results[{r}]"
            if not isinstance(result.get("task", {}).get("type"), str):
                errors.append(f'"{where}.task.type" is required')
            dataset = result.get("dataset", {})
            if not (isinstance(dataset.get("type"), str) and isinstance(dataset.get("name"), str)):
                errors.append(f'"{where}.dataset" needs "type" and "name"')
            for m, metric in enumerate(result.get("metrics") or []):
                if not isinstance(metric.get("type"), str) or not isinstance(metric.get("value"), (int, float, str)):
                    errors.append(f'"{where}.metrics[{m}]" needs "type" and a "value"')
    return errors


def _bearer(headers) -> str | None:
    value = headers.get("Authorization", "")
    if not value.startswith("Bearer "):
        return None
    return value[len("Bearer ") :].strip() or None


class _HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer carries Content-Length
    fake_hub: FakeHub

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._read_body()
        try:
            status, payload = self.fake_hub.handle(self.command, self.path, self.headers, body)
            headers = {}
        except HubError as error:
            status, payload = error.status, {"error": error.message, **error.extra}
            headers = {"X-Error-Message": error.message}
            if error.error_code:
                headers["X-Error-Code"] = error.error_code
        except Exception as error:  # a bug in the fake or a malformed request: answer 500 naming it, keep serving
            status, payload = 500, {"error": f"fake hub crashed: {type(error).__name__}: {error}"}
            headers = {"X-Error-Message": payload["error"][:200]}
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, format, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass  # quiet: requests are recorded in `fake_hub.requests`
