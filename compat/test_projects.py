"""Projects: create / get / list / update / delete, and their errors (protocol doc §4.1)."""

import time

import pytest
from datahub.exceptions import (DatahubException, InvalidParameterException, ResourceExistException,
                                ResourceNotFoundException)

from util import create_blob_topic, unique_name


def test_project_lifecycle(dh):
    name = unique_name("p")
    before = int(time.time())
    dh.create_project(name, "first comment")

    got = dh.get_project(name)
    assert got.project_name == name
    assert got.comment == "first comment"
    assert isinstance(got.create_time, int) and isinstance(got.last_modify_time, int)
    # Project times are in seconds (protocol doc §6.3).
    assert before - 5 <= got.create_time <= int(time.time()) + 5, got.create_time
    assert got.last_modify_time >= got.create_time

    assert name in dh.list_project().project_names

    dh.update_project(name, "second comment ✓")
    got2 = dh.get_project(name)
    assert got2.comment == "second comment ✓"
    assert got2.create_time == got.create_time
    assert got2.last_modify_time >= got.last_modify_time

    dh.delete_project(name)
    with pytest.raises(ResourceNotFoundException) as e:
        dh.get_project(name)
    assert e.value.error_code == "NoSuchProject"
    assert name not in dh.list_project().project_names

    # the name is free again, and the new project starts empty
    dh.create_project(name, "reborn")
    assert dh.get_project(name).comment == "reborn"
    assert dh.list_topic(name).topic_names == []


def test_list_projects_contains_every_created_project(dh):
    names = [unique_name("p") for _ in range(3)]
    for n in names:
        dh.create_project(n, "")
    listed = dh.list_project().project_names
    assert isinstance(listed, list)
    for n in names:
        assert listed.count(n) == 1


def test_create_duplicate_project(dh, project):
    with pytest.raises(ResourceExistException) as e:
        dh.create_project(project, "again")
    assert e.value.error_code == "ProjectAlreadyExist"


def test_project_names_are_unique_case_insensitively(dh):
    name = unique_name("CaseP")
    dh.create_project(name, "")
    with pytest.raises(ResourceExistException):
        dh.create_project(name.lower(), "")


@pytest.mark.parametrize("call", ["get", "update", "delete", "list_topic"])
def test_missing_project(dh, call):
    name = unique_name("nope")
    with pytest.raises(ResourceNotFoundException) as e:
        if call == "get":
            dh.get_project(name)
        elif call == "update":
            dh.update_project(name, "c")
        elif call == "delete":
            dh.delete_project(name)
        else:
            dh.list_topic(name)
    assert e.value.error_code == "NoSuchProject"


@pytest.mark.parametrize("bad_name", [
    "ab",                 # too short (3..32)
    "a" * 33,             # too long
    "1abc",               # must start with a letter
    "_abc",
    "ab-cd",              # only letters, digits, underscore
    "abc.d",
    "abc%24d",            # 'abc$d' percent-encoded in the path
])
def test_invalid_project_name_rejected_by_server(dh, bad_name):
    # pydatahub checks names client-side; send the create through its REST client to bypass that.
    rest = dh._datahub_impl._rest_client
    with pytest.raises(InvalidParameterException) as e:
        rest.post("/projects/%s" % bad_name, data='{"Comment": "bad"}')
    assert e.value.error_code in ("InvalidParameter", "InvalidUriSpec")
    assert e.value.status_code == 400


def test_delete_project_after_its_topics(dh, project):
    topic = create_blob_topic(dh, project)
    dh.delete_topic(project, topic)
    dh.delete_project(project)
    with pytest.raises(ResourceNotFoundException):
        dh.get_project(project)


def test_delete_project_with_topics_is_refused(dh, project):
    create_blob_topic(dh, project)
    with pytest.raises(DatahubException) as e:
        dh.delete_project(project)
    assert 400 <= e.value.status_code < 500
    assert e.value.error_code  # a DataHub error code, not a transport failure
    # and the project is still there
    assert dh.get_project(project).project_name == project
