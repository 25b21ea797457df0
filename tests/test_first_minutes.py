"""What a newcomer reaches for first: forgetting a folder, `doctor`, shell completion (the real CLI, in-process)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from imgsearch.cli import app
from tests.factories import write_photo
from tests.test_cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_forget_removes_a_folder_and_its_photos_but_not_the_files(tmp_path: Path, photos_dir: Path,
                                                                   tiny_model_dir: Path) -> None:
    keep, old = tmp_path / "keep", tmp_path / "old-drive"
    for i, colour in enumerate(("red", "green", "blue")):
        write_photo(keep / f"{colour}.png", colour, size=(48, 40 + i))
        write_photo(old / f"{colour}.jpg", colour, size=(40 + i, 48), fmt="JPEG")
    (old / "broken.jpg").write_bytes(b"not a picture")
    lib = tmp_path / "lib"
    assert cli("index", keep, old, "-L", lib, "-m", f"local-dir:{tiny_model_dir}", "--workers", "0",
               "--thumbnails").exit_code == 0
    assert cli("tag", "--labels", "red,green,blue", "-L", lib).exit_code == 0
    thumbs = sorted((lib / "thumbs").rglob("*.webp"))
    assert len(thumbs) == 6

    # not a folder of the library: refused, naming them
    inside = cli("forget", old / "sub", "-L", lib)
    assert inside.exit_code == 2 and f"it is inside {old}, one of the library's folders: forget that one" in inside.stderr
    elsewhere = cli("forget", tmp_path / "elsewhere", "-L", lib)
    assert elsewhere.exit_code == 2 and "it is not one of the library's folders" in elsewhere.stderr
    assert f"The library's folders: {keep}, {old}" in elsewhere.stderr

    got = cli("forget", old, "-L", lib)
    assert got.exit_code == 0, got.output
    assert f"Forgot {old}: 3 photo(s)" in got.stderr and "the files themselves are untouched" in got.stderr
    assert sorted(p.name for p in old.iterdir()) == ["blue.jpg", "broken.jpg", "green.jpg", "red.jpg"]
    found = [json.loads(line)["path"] for line in cli("search", "red", "-L", lib, "--json", "-k", "10").stdout.splitlines()]
    assert sorted(Path(p).name for p in found) == ["blue.png", "green.png", "red.png"]
    status = json.loads(cli("status", "-L", lib, "--json").stdout)
    assert [r[0] for r in status["roots"]] == [str(keep)] and status["indexed"] == 3 and status["skipped"] == 0
    assert sum(status["tags"].values()) == 3  # the forgotten photos' tags went with them
    assert len(sorted((lib / "thumbs").rglob("*.webp"))) == 3

    # the command it suggests brings them back
    back = got.stderr.split("Bring them back with: ")[1].split()
    again = cli(*back[1:], "-L", lib, "--workers", "0")
    assert again.exit_code == 0 and "3 new" in again.stderr and "1 skipped" in again.stderr, again.stderr


def test_doctor_names_what_is_missing_and_the_fix_works(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['pillow_jxl'] = None  # as if not installed\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)]), "IMGSEARCH_CACHE": str(tmp_path)}
    got = subprocess.run([sys.executable, "-m", "imgsearch", "doctor", "--json"], capture_output=True, text=True,
                         env=env, timeout=300, cwd=ROOT)
    assert got.returncode == 0, got.stderr
    checks = {(c["area"], c["name"]): c for c in map(json.loads, got.stdout.splitlines())}
    assert checks[("decoders", "HEIF")]["ok"] and checks[("runtimes", "ONNX Runtime")]["ok"]
    jxl = checks[("decoders", "JXL")]
    assert not jxl["ok"] and jxl["fix"] == 'pip install pillow-jxl-plugin (the "jxl" extra of imgsearch)'
    assert checks[("runtimes", "PyTorch")]["ok"]  # the test environment has the torch extra
    assert checks[("models", "exports")]["detail"].startswith(f"0 in {tmp_path / 'exports'}")
    assert not checks[("models", "default model")]["ok"]  # offline, nothing cached
    fix = shlex.split(jxl["fix"].split(" (")[0])
    done = subprocess.run([sys.executable, "-m", *fix], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # installed here already: pip says so
    text = subprocess.run([sys.executable, "-m", "imgsearch", "doctor"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)
    assert "  --  JXL" in text.stdout and 'fix: pip install pillow-jxl-plugin' in text.stdout
    assert f"{sum(c['ok'] for c in checks.values())} of {len(checks)} available" in text.stderr


def test_shell_completion_completes_commands_and_installs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    env = {"_IMGSEARCH_COMPLETE": "complete_bash", "COMP_WORDS": "imgsearch ind", "COMP_CWORD": "1"}
    got = CliRunner().invoke(app, [], env=env, prog_name="imgsearch")
    assert got.stdout.split() == ["index"]
    env = {"_IMGSEARCH_COMPLETE": "complete_bash", "COMP_WORDS": "imgsearch index --ru", "COMP_CWORD": "2"}
    assert CliRunner().invoke(app, [], env=env, prog_name="imgsearch").stdout.split() == ["--runtime"]
    # `imgsearch --install-completion` writes the script and sources it from the shell's startup file
    home = tmp_path / "home"
    home.mkdir()
    # typed in bash (typer finds the shell among the parent processes; "; exit $?" keeps bash from exec'ing python)
    command = f"{shlex.quote(sys.executable)} -c 'from imgsearch.cli import app; app(prog_name=\"imgsearch\")' " \
              "--install-completion; exit $?"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "HOME": str(home), "SHELL": "/bin/bash"})
    assert done.returncode == 0, done.stderr
    script = home / ".bash_completions" / "imgsearch.sh"
    assert "_imgsearch_completion" in script.read_text() and str(script) in (home / ".bashrc").read_text()


def test_an_action_that_moved_nothing_offers_no_undo(tmp_path: Path, tiny_model_dir: Path) -> None:
    pics, lib = tmp_path / "pics", tmp_path / "lib"
    write_photo(pics / "a" / "red.png", "red")
    (pics / "b").mkdir()
    (pics / "b" / "red-copy.png").write_bytes((pics / "a" / "red.png").read_bytes())
    assert cli("index", pics, "-L", lib, "-m", f"local-dir:{tiny_model_dir}", "--workers", "0").exit_code == 0
    (pics / "b" / "red-copy.png").unlink()  # gone between the scan and the move: the move fails
    got = cli("dups", "--tier", "exact", "--move-to", tmp_path / "aside", "--apply", "--yes", "-L", lib)
    assert "Done: move 0 file(s)" in got.stderr, got.stderr
    assert "Undo with" not in got.stderr and "nothing was changed, nothing to undo" in got.stderr


def test_serve_stopped_by_sigterm_leaves_no_server_file_and_a_busy_port_is_named(tmp_path: Path,
                                                                                 tiny_model_dir: Path) -> None:
    import signal
    import socket

    from tests.programs import wait_for_url

    pics, lib = tmp_path / "pics", tmp_path / "lib"
    write_photo(pics / "red.png", "red")
    assert cli("index", pics, "-L", lib, "-m", f"local-dir:{tiny_model_dir}", "--workers", "0").exit_code == 0
    with socket.socket() as taken:  # another program holds a port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([sys.executable, "-m", "imgsearch", "serve", "-L", str(lib), "--port", str(port)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert busy.returncode == 1 and busy.stderr.startswith(f"Error: port {port} on 127.0.0.1 is in use"), busy.stderr
    assert "give --port another one" in busy.stderr and "Traceback" not in busy.stderr
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "-L", str(lib), "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    wait_for_url(server, log)
    assert (lib / "server.json").is_file()  # where the CLI on this machine finds it (with the token)
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=60) == 128 + signal.SIGTERM
    assert not (lib / "server.json").exists()


def test_status_after_a_killed_run_and_multi_line_skip_reasons(tmp_path: Path, tiny_model_dir: Path) -> None:
    from imgsearch import Library, store

    pics, lib = tmp_path / "pics", tmp_path / "lib"
    write_photo(pics / "red.png", "red")
    assert cli("index", pics, "-L", lib, "-m", f"local-dir:{tiny_model_dir}", "--workers", "0").exit_code == 0
    with Library.open(lib) as library, library.sessions.begin() as session:
        model_id = store.list_models(session)[0].id
        store.start_run(session, [str(pics)], model_id)  # what a run killed with -9 leaves: "running" for ever
        store.save_skipped(session, str(pics / "odd.jpg"), 1, 1, "cannot decode:\nline two\tand a tab", None)
    status = json.loads(cli("status", "-L", lib, "--json").stdout)
    assert status["last_run"]["status"] == "stopped", status["last_run"]
    assert cli("status", "-L", lib).stdout.count("Last run: stopped at ") == 1
    rows = cli("status", "--skipped", "-L", lib).stdout.splitlines()
    assert rows == [f"{pics / 'odd.jpg'}\tcannot decode: line two and a tab"]


def test_an_upload_too_large_is_refused_before_it_is_read(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A real server: a declared 1.5 GB upload is answered at once, without waiting for its body; one without a
    Content-Length is cut off once it passes the limit (30 MB here), not read to its end."""
    import select
    import socket

    from tests.programs import wait_for_url

    pics, lib = tmp_path / "pics", tmp_path / "lib"
    write_photo(pics / "red.png", "red")
    assert cli("index", pics, "-L", lib, "-m", f"local-dir:{tiny_model_dir}", "--workers", "0").exit_code == 0
    log = tmp_path / "serve.log"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "-L", str(lib), "--port", str(free_port)],
                                  stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        url = wait_for_url(server, log)
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        head = (f"POST /api/v1/search/image HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n")
        with socket.create_connection((host, int(port)), timeout=60) as s:
            s.sendall((head + "Content-Length: 1500000000\r\n\r\n--b\r\n").encode())
            answer = http_answer(s)  # comes without the 1.5 GB being sent
        assert answer.startswith("HTTP/1.1 413"), answer[:600]
        envelope = json.loads(answer.split("\r\n\r\n", 1)[1])  # the API's one error shape, not the framework's text
        assert envelope["error"]["code"] == "too_large" and "at most 30 MB" in envelope["error"]["message"]
        with socket.create_connection((host, int(port)), timeout=60) as s:  # a page's own 404 stays a page
            s.sendall(f"GET /photo/99999999 HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            page = http_answer(s)
        assert page.startswith("HTTP/1.1 404") and "content-type: text/html" in page.lower(), page[:600]
        with socket.create_connection((host, int(port)), timeout=60) as s:
            part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
            s.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"%x\r\n" % len(part) + part + b"\r\n")
            chunk = b"x" * (1 << 20)
            sent = 0
            try:
                for _ in range(200):  # 200 MB at most: the answer comes long before (it is the signal to stop)
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
                    if select.select([s], [], [], 0)[0]:
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = http_answer(s)
        assert answer.startswith("HTTP/1.1 413"), answer[:600]
        assert sent < 200 * (1 << 20)  # cut off, not read to the end
    finally:
        server.terminate()
        server.wait(timeout=60)


def http_answer(sock) -> str:  # a connected socket
    """One HTTP response, read whole: its head, then the Content-Length bytes of its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def test_serving_on_the_network_answers_the_names_it_is_given(tmp_path: Path, tiny_model_dir: Path) -> None:
    """--host 0.0.0.0 with --allowed-host: a request naming that host (sent to 127.0.0.1: no other address is
    touched) is served with the token; the printed link for other machines uses that name."""
    import socket

    import httpx

    from tests.programs import wait_for_url

    pics, lib = tmp_path / "pics", tmp_path / "lib"
    write_photo(pics / "red.png", "red")
    assert cli("index", pics, "-L", lib, "-m", f"local-dir:{tiny_model_dir}", "--workers", "0").exit_code == 0
    token = "a-token-long-enough-for-the-tests"
    (tmp_path / "token").write_text(token)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "-L", str(lib), "--port", str(port),
                                   "--host", "0.0.0.0", "--allowed-host", "photos.lan", "--token-file",
                                   str(tmp_path / "token")], stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        wait_for_url(server, log)
        assert f"From other machines: http://photos.lan:{port}/?token={token}" in log.read_text()
        auth = {"Authorization": f"Bearer {token}"}
        named = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", headers={**auth, "Host": f"photos.lan:{port}"})
        assert named.status_code == 200, named.text
        other = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", headers={**auth, "Host": f"other.lan:{port}"})
        assert other.status_code == 400 and other.json()["error"]["code"] == "bad_host"
        no_token = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", headers={"Host": f"photos.lan:{port}"})
        assert no_token.status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=60)
