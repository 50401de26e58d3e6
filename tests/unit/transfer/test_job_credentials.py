"""The job's credential for a transfer: only the job's, only where it fits."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ospool_ep.transfer import tokens


def jwt(scope: str) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256'})}.{part({'scope': scope, 'exp': 4102444800})}.c2ln"


def creds(tmp_path: Path, **files: str) -> dict[str, str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {tokens.CREDS_VARIABLE: str(tmp_path)}


def test_a_named_credential_is_the_jobs_file_of_that_name(tmp_path: Path) -> None:
    env = creds(tmp_path, **{"ligo.use": "T1\n", "scitokens.use": "T2"})
    found = tokens.find(env, name="ligo", path="/x", write=False)
    assert found is not None
    assert (found.name, found.text) == ("ligo", "T1")
    assert "T1" not in repr(found)


def test_a_dotted_name_is_also_found_as_htcondor_stores_it(tmp_path: Path) -> None:
    env = creds(tmp_path, **{"ligo_prod.use": "T"})
    found = tokens.find(env, name="ligo.prod", path="/x", write=False)
    assert found is not None
    assert found.text == "T"


def test_a_named_credential_the_job_lacks_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(tokens.TokenProblem, match="no credential 'ligo'"):
        tokens.find(creds(tmp_path), name="ligo", path="/x", write=False)
    with pytest.raises(tokens.TokenProblem, match="use_oauth_services"):
        tokens.find({}, name="ligo", path="/x", write=False)


def test_without_a_name_scitokens_use_then_the_one_token_whose_scope_fits(tmp_path: Path) -> None:
    env = creds(tmp_path, **{"a.use": jwt("storage.read:/other"), "b.use": jwt("storage.read:/x")})
    found = tokens.find(env, name=None, path="/x/data", write=False)
    assert found is not None
    assert found.name == "b"
    assert tokens.find(env, name=None, path="/x/data", write=True) is None
    (tmp_path / "scitokens.use").write_text(jwt("storage.read:/"))
    default = tokens.find(env, name=None, path="/x/data", write=False)
    assert default is not None
    assert default.name == "scitokens"


def test_no_credentials_directory_means_no_token(tmp_path: Path) -> None:
    assert tokens.find({}, name=None, path="/x", write=False) is None


def test_the_json_some_credmons_write_gives_its_access_token(tmp_path: Path) -> None:
    env = creds(tmp_path, **{"scitokens.use": json.dumps({"access_token": "AT", "x": 1})})
    found = tokens.find(env, name=None, path="/x", write=False)
    assert found is not None
    assert found.text == "AT"


def test_scopes_cover_paths_by_whole_components() -> None:
    assert tokens.covers(jwt("storage.read:/x"), "/x/y", write=False)
    assert not tokens.covers(jwt("storage.read:/x"), "/xy", write=False)
    assert tokens.covers(jwt("storage.create:/x storage.read:/x"), "/x/out", write=True)
    assert not tokens.covers("not-a-jwt", "/x", write=False)


def test_a_symlinked_credential_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("PILOT-TOKEN")
    (tmp_path / "ligo.use").symlink_to(secret)
    with pytest.raises(tokens.TokenProblem, match="cannot be read"):
        tokens.find({tokens.CREDS_VARIABLE: str(tmp_path)}, name="ligo", path="/x", write=False)


def test_an_oversized_credential_is_refused(tmp_path: Path) -> None:
    env = creds(tmp_path, **{"big.use": "x" * (tokens.MAX_TOKEN_BYTES + 1)})
    with pytest.raises(tokens.TokenProblem, match="larger than"):
        tokens.find(env, name="big", path="/x", write=False)
    (tmp_path / "big.use").unlink()
