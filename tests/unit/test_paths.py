import os

import pytest

from clown.paths import ClientPathError, check_client_path


def test_accepts_an_existing_dir_under_a_root(tmp_path):
    target = tmp_path / "repo"
    target.mkdir()
    assert check_client_path(str(target), "repo_path", [str(tmp_path)]) == os.path.realpath(target)


@pytest.mark.parametrize("value", ["", "relative/dir", "~/x"])
def test_rejects_non_absolute_paths_naming_the_field(tmp_path, value):
    with pytest.raises(ClientPathError) as caught:
        check_client_path(value, "claude_dir", [str(tmp_path)])
    assert caught.value.field == "claude_dir"
    assert "claude_dir" in str(caught.value)


def test_rejects_a_missing_path(tmp_path):
    with pytest.raises(ClientPathError, match="codex_dir: .* does not exist"):
        check_client_path(str(tmp_path / "nope"), "codex_dir", [str(tmp_path)])


def test_rejects_a_path_outside_the_roots(tmp_path):
    inside = tmp_path / "root"
    inside.mkdir()
    with pytest.raises(ClientPathError, match="not under an allowed root"):
        check_client_path(str(tmp_path), "working_dir", [str(inside)])


def test_a_symlink_that_leaves_the_roots_is_rejected(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(ClientPathError, match="not under an allowed root"):
        check_client_path(str(root / "link"), "repo_path", [str(root)])


def test_a_sibling_with_a_common_prefix_is_not_inside(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "rootother").mkdir()
    with pytest.raises(ClientPathError):
        check_client_path(str(tmp_path / "rootother"), "repo_path", [str(tmp_path / "root")])


def test_a_file_where_a_directory_is_wanted(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ClientPathError, match="not a directory"):
        check_client_path(str(tmp_path / "f"), "repo_path", [str(tmp_path)])
    assert check_client_path(str(tmp_path / "f"), "repo_path", [str(tmp_path)], want_dir=None)
