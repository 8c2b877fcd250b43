"""A small fake Hugging Face Hub on 127.0.0.1, speaking the part of the Hub API that hf_toponets.hub.push uses.

Endpoints (as huggingface_hub 2.x calls them):
  POST /api/repos/create                           {name, organization, visibility} -> {url}; 409 when it exists
  POST /api/validate-yaml                          {content} -> 200, or 400 {errors} for a bad metadata block
  POST /api/models/{repo}/preupload/{rev}          {files: [{path, size, sample}]} -> every file 'regular' (inline
                                                   base64; there is no LFS here), with the oid of the file on rev
  POST /api/models/{repo}/commit/{rev}             NDJSON: header, then file (base64) / deletedFile lines
  POST /api/models/{repo}/branch/{branch}          {startingPoint}; 409 when it exists
  GET  /api/models/{repo}[/revision/{rev}]         {id, sha, private, siblings: [{rfilename, size, blobId}]}
  GET  /api/models/{repo}/tree/{rev}[/{path}]      [{type: file|directory, path, oid, size}] (?recursive=1)
  HEAD/GET /{repo}/resolve/{rev}/{path}            the file, with ETag (git blob id), X-Repo-Commit, Content-Length
                                                   (no LFS, hence no X-Linked-Etag/X-Linked-Size, no Xet headers)
Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) as the Hub does; a private repo
answers 401 RepoNotFound without a valid token. Tokens map to user names (``HubServer(tokens=...)``).
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

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
ROUTES = [  # (method, pattern, handler name); the first match wins
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", "create_branch"),
    ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


def git_blob_id(data: bytes) -> str:
    """The git object id of a file: sha1 of ``b'blob <size>\\0' + data`` (what the Hub reports as oid/ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **body):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.body = status, message, code, headers or {}, body


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> {path: content}
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    log: list[str] = field(default_factory=list)  # commit messages, oldest first

    def add_commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        parent = self.branches.get(branch, "")
        listing = "".join(f"{p} {git_blob_id(c)}\n" for p, c in sorted(files.items()))
        sha = hashlib.sha1(f"{parent}\n{message}\n{listing}".encode()).hexdigest()
        self.commits[sha], self.branches[branch] = dict(files), sha
        self.log.append(message)
        return sha

    def resolve(self, rev: str) -> str:
        sha = self.branches.get(rev, rev if rev in self.commits else None)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha


class HubServer:
    """``with HubServer(tokens={'hf_x': 'user'}) as hub: ... hub.endpoint ...``; state in ``hub.repos``."""

    def __init__(self, tokens: dict[str, str], port: int = 0):
        self.tokens, self.repos, self.lock = dict(tokens), {}, threading.Lock()
        self.requests: list[str] = []  # "METHOD path" of every request, for tests to inspect
        self.unknown: list[str] = []  # the requests that no route matched (answered 404)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-hub", daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    # -- helpers ------------------------------------------------------------------------------------------
    def user(self, headers, required: bool) -> str | None:
        auth = headers.get("Authorization") or ""
        if not auth:
            if required:
                raise HubError(401, "Invalid username or password.")
            return None
        token = auth.removeprefix("Bearer ")
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def repo(self, repo_id: str, headers, write: bool = False) -> Repo:
        user = self.user(headers, required=write)
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            # the Hub hides private repos: 401 for anonymous callers, 404 for others
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if write and user != repo_id.split("/")[0]:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    # -- endpoints ----------------------------------------------------------------------------------------
    def create_repo(self, req, body):
        user = self.user(req.headers, required=True)
        data = json.loads(body)
        namespace = data.get("organization") or user
        if namespace != user:
            raise HubError(403, f"You don't have the rights to create a model under the namespace {namespace!r}")
        repo_id = f"{namespace}/{data['name']}"
        url = f"{self.endpoint}/{repo_id}"
        if repo_id in self.repos:
            raise HubError(409, "You already created this model repo", url=url)  # create_repo(exist_ok) reads url
        self.repos[repo_id] = repo = Repo(private=data.get("visibility") == "private")
        repo.add_commit("main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                        "initial commit")
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def validate_yaml(self, req, body):
        content = json.loads(body)["content"]
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        errors = []
        if match is None:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError as e:
            meta, errors = None, [{"message": f"invalid YAML: {e}"}]
        if not errors and not isinstance(meta, dict):
            errors = [{"message": "metadata must be a YAML mapping"}]
        for entry in (meta or {}).get("model-index") or []:
            for result in entry.get("results") or []:
                if not all(key in result for key in ("task", "dataset", "metrics")):
                    errors.append({"message": '"model-index[0].results[0]" must have task, dataset and metrics'})
        return (400 if errors else 200), {"errors": errors, "warnings": []}

    def preupload(self, req, body, repo, rev):
        repo = self.repo(unquote(repo), req.headers, write=True)
        files = repo.commits[repo.resolve(unquote(rev))] if unquote(rev) in repo.branches else {}
        out = []
        for f in json.loads(body)["files"]:
            oid = git_blob_id(files[f["path"]]) if f["path"] in files else None
            out.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        return 200, {"files": out, "commitOid": repo.branches.get(unquote(rev))}

    def commit(self, req, body, repo, rev):
        repo_id, rev = unquote(repo), unquote(rev)
        repo = self.repo(repo_id, req.headers, write=True)
        files = dict(repo.commits[repo.resolve(rev)])
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:
                raise HubError(400, f"this test Hub accepts inline base64 files and deletions only, got {key!r}")
        sha = repo.add_commit(rev, files, lines[0]["value"]["summary"])
        return 200, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha, "success": True}

    def create_branch(self, req, body, repo, branch):
        repo = self.repo(unquote(repo), req.headers, write=True)
        branch = unquote(branch)
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
        repo.branches[branch] = repo.resolve(start)
        return 200, {}

    def repo_info(self, req, body, repo, rev=None):
        repo_id = unquote(repo)
        repo = self.repo(repo_id, req.headers)
        sha = repo.resolve(unquote(rev or "main"))
        siblings = [{"rfilename": p, "size": len(c), "blobId": git_blob_id(c)} for p, c in sorted(repo.commits[sha].items())]
        return 200, {"id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": sha,
                     "private": repo.private, "siblings": siblings, "tags": [], "downloads": 0, "likes": 0}

    def tree(self, req, body, repo, rev, path=""):
        repo = self.repo(unquote(repo), req.headers)
        files = repo.commits[repo.resolve(unquote(rev))]
        prefix = unquote(path).strip("/") + "/" if path else ""
        recursive = parse_qs(urlsplit(req.path).query).get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = {}
        for name, content in sorted(files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            # the folders between prefix and the file: all of them when recursive, else only the first level
            depths = range(1, len(parts)) if recursive else range(1, min(len(parts), 2))
            for folder in (prefix + "/".join(parts[:d]) for d in depths):
                entries[folder] = {"type": "directory", "path": folder, "oid": git_blob_id(folder.encode()), "size": 0}
            if recursive or len(parts) == 1:
                entries[name] = {"type": "file", "path": name, "oid": git_blob_id(content), "size": len(content)}
        if prefix and not entries:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        return 200, list(entries.values())

    def resolve(self, req, body, repo, rev, path):
        repo = self.repo(unquote(repo), req.headers)
        sha = repo.resolve(unquote(rev))
        path = unquote(path)
        if path not in repo.commits[sha]:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": sha})
        content = repo.commits[sha][path]
        headers = {"ETag": f'"{git_blob_id(content)}"', "X-Repo-Commit": sha, "Content-Type": "application/octet-stream"}
        return 200, content, headers


def _make_handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        def _dispatch(self, method: str) -> None:
            path = urlsplit(self.path).path
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            with hub.lock:
                hub.requests.append(f"{method} {path}")
                try:
                    for route_method, pattern, name in ROUTES:
                        match = re.fullmatch(pattern, path)
                        if route_method == method and match:
                            args = {k: v for k, v in match.groupdict().items() if v is not None}
                            result = getattr(hub, name)(self, body, **args)
                            break
                    else:
                        hub.unknown.append(f"{method} {path}")
                        raise HubError(404, f"{method} {path} is not part of this test Hub")
                except HubError as e:
                    headers = {**e.headers, "X-Error-Message": e.message}
                    if e.code:
                        headers["X-Error-Code"] = e.code
                    result = (e.status, {"error": e.message, **e.body}, headers)
            status, payload, headers = (*result, {}) if len(result) == 2 else result
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            headers.setdefault("Content-Type", "application/json")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            self._dispatch("GET")

        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_POST(self):
            self._dispatch("POST")

        def log_message(self, format, *args):  # quiet: tests inspect hub.requests instead
            pass

    return Handler
