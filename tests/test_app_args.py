"""app.py's start-up decisions, without starting anything: host, credentials, --no-auth, --read-only."""

from __future__ import annotations

import pytest
from browser_util import import_app

app = import_app()

NO_ENV: dict[str, str] = {}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert app.is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.5", "10.0.0.1", "example.com", "localhost.evil.com"])
def test_other_hosts_are_not_loopback(host):
    assert not app.is_loopback(host)


def test_loopback_needs_no_credentials():
    assert app.auth_for(app.parse_args([], env=NO_ENV), NO_ENV) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_other_hosts_refuse_to_start_without_credentials(host):
    args = app.parse_args(["--host", host], env=NO_ENV)
    with pytest.raises(app.StartupError, match="QA_AUTH") as err:
        app.auth_for(args, NO_ENV)
    assert "\n" not in str(err.value) and "--no-auth" in str(err.value)


def test_no_auth_must_be_explicit():
    args = app.parse_args(["--host", "0.0.0.0", "--no-auth"], env=NO_ENV)
    assert app.auth_for(args, NO_ENV) is None


def test_credentials_from_the_environment():
    env = {"QA_AUTH": "alice:s3cret:with:colons"}
    args = app.parse_args(["--host", "0.0.0.0"], env=env)
    assert app.auth_for(args, env) == [("alice", "s3cret:with:colons")]
    loop = app.parse_args([], env=env)
    assert app.auth_for(loop, env) == [("alice", "s3cret:with:colons")]  # given, so used on loopback too


def test_credentials_from_a_file(tmp_path):
    f = tmp_path / "users"
    f.write_text("# who may read\nalice:one\n\n  bob : two words \n", encoding="utf-8")
    env = {"QA_AUTH_FILE": str(f), "QA_AUTH": "carol:three"}
    args = app.parse_args(["--host", "0.0.0.0"], env=env)
    assert app.auth_for(args, env) == [("carol", "three"), ("alice", "one"), ("bob", " two words ")]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"QA_AUTH": "alice"}, "QA_AUTH must be user:password"),
        ({"QA_AUTH": ":pw"}, "QA_AUTH must be user:password"),
        ({"QA_AUTH": "alice:"}, "QA_AUTH must be user:password"),
        ({"QA_AUTH_FILE": "/nonexistent/users"}, "cannot read QA_AUTH_FILE /nonexistent/users"),
    ],
)
def test_bad_credentials_are_refused_without_showing_the_password(env, needle):
    args = app.parse_args(["--host", "0.0.0.0"], env=env)
    with pytest.raises(app.StartupError, match=needle) as err:
        app.auth_for(args, env)
    assert "\n" not in str(err.value)


def test_a_bad_line_in_the_auth_file_is_named_but_not_shown(tmp_path):
    f = tmp_path / "users"
    f.write_text("alice:one\nbob-topsecret\n", encoding="utf-8")
    env = {"QA_AUTH_FILE": str(f)}
    with pytest.raises(app.StartupError, match=r"line 2") as err:
        app.auth_for(app.parse_args(["--host", "0.0.0.0"], env=env), env)
    assert "topsecret" not in str(err.value)


def test_credentials_are_never_taken_from_the_command_line(capsys):
    with pytest.raises(SystemExit) as err:
        app.parse_args(["--auth", "alice:pw"], env=NO_ENV)
    assert err.value.code == 2


@pytest.mark.parametrize(
    ("argv", "env", "read_only"),
    [
        ([], {}, False),
        (["--read-only"], {}, True),
        ([], {"QA_READ_ONLY": "1"}, True),
        ([], {"QA_READ_ONLY": "true"}, True),
        ([], {"QA_READ_ONLY": "0"}, False),
        ([], {"QA_READ_ONLY": ""}, False),
    ],
)
def test_read_only_from_flag_or_environment(argv, env, read_only):
    assert app.parse_args(argv, env=env).read_only is read_only


def test_bad_environment_values_are_usage_errors(capsys):
    for env in ({"QA_READ_ONLY": "maybe"}, {"QA_PORT": "eighty"}):
        with pytest.raises(SystemExit) as err:
            app.parse_args([], env=env)
        assert err.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_main_refuses_an_open_public_address_with_one_line_and_exit_code_2(monkeypatch, capsys):
    for name in ("QA_AUTH", "QA_AUTH_FILE", "QA_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(app, "serve", lambda *a, **k: pytest.fail("it started"))
    assert app.main(["--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0.0.0.0" in err and "QA_AUTH" in err


def test_main_passes_credentials_and_read_only_to_the_server(monkeypatch):
    seen = {}
    monkeypatch.setenv("QA_AUTH", "alice:pw")
    monkeypatch.delenv("QA_AUTH_FILE", raising=False)
    monkeypatch.setattr(app, "serve", lambda args, auth: seen.update(args=args, auth=auth) or 0)
    assert app.main(["--host", "0.0.0.0", "--read-only"]) == 0
    assert seen["auth"] == [("alice", "pw")] and seen["args"].read_only
