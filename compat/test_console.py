"""The web console (`/console`) end to end in headless Chromium.

Selenium drives Debian's `chromium` through Debian's `chromium-driver` (/usr/bin/chromium,
/usr/bin/chromedriver; scripts/test.sh installs both), offline: both paths are given, so Selenium
Manager never runs. A missing browser or driver FAILS the tests. The walk: a wrong key is refused
→ sign in → create a topic → put with pydatahub → sample records (and follow) → create a
SINK_MYSQL connector into the MariaDB of scripts/services.sh → watch its progress → stop →
offset reset → start → sign out. Screenshots go to compat/out/console/ (gitignored); the
assertions are on page elements, never pixels. Cookie flags and CSRF are checked with requests.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import requests
from datahub.models import FieldType, RecordSchema, TupleRecord

from util import ACCESS_ID, ACCESS_KEY, unique_name, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "console")
WAIT_S = 30


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail("%s is not set: run through scripts/test.sh (scripts/services.sh starts MariaDB)" % name,
                    pytrace=False)
    return value


@pytest.fixture
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail("%s is missing: install Debian's chromium and chromium-driver "
                        "(scripts/test.sh does)" % path, pytrace=False)
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager reach the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sluice-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                "--user-data-dir=" + profile):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    os.makedirs(OUT, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name):
    driver.save_screenshot(os.path.join(OUT, name + ".png"))


def wait_el(driver, css, timeout=WAIT_S):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def find(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, css)


def find_all(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def fill(driver, css, value):
    el = find(driver, css)
    el.clear()
    el.send_keys(value)


def sign_in(driver, endpoint, key):
    driver.get(endpoint + "/console/login")
    fill(driver, "#access-id", ACCESS_ID)
    fill(driver, "#access-key", key)
    find(driver, "#sign-in-button").click()


def progress(driver):
    """{shard: (state, position, end, lag)} from the connector page's progress table, read in one
    script call (the page's JS replaces the rows every poll)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#progress tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent.trim()));")
    return {cells[0]: (cells[1], cells[2], cells[3], cells[4]) for cells in rows if len(cells) >= 5}


def confirm(driver, expect):
    wait_el(driver, "#confirm-text")
    assert expect in find(driver, "#confirm-text").text
    find(driver, "#confirm").click()


def mariadb(sql):
    host, port = env("SLUICE_TEST_MYSQL_HOST"), env("SLUICE_TEST_MYSQL_PORT")
    user, password = env("SLUICE_TEST_MYSQL_USER"), env("SLUICE_TEST_MYSQL_PASSWORD")
    out = subprocess.run(["mariadb", "--no-defaults", "-h", host, "-P", port, "-u", user, "-p" + password,
                          "-N", "-B", env("SLUICE_TEST_MYSQL_DATABASE"), "-e", sql],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return [line.split("\t") for line in out.splitlines()]


def records(first, count):
    schema = RecordSchema.from_lists(["id", "name"], [FieldType.BIGINT, FieldType.STRING])
    return [TupleRecord(schema=schema, values=[i, "row %d" % i]) for i in range(first, first + count)]


def put(dh, project, topic, shard, recs):
    for r in recs:
        r.shard_id = shard
    result = dh.put_records(project, topic, recs)
    assert result.failed_record_count == 0


@pytest.mark.timeout(300)
def test_console_walkthrough(browser, server, dh, project):
    d, endpoint = browser, server.endpoint

    # A wrong key is refused with a message, and no session is handed out.
    sign_in(d, endpoint, "not-the-key")
    wait_el(d, "#sign-in-error")
    assert "refused" in find(d, "#sign-in-error").text
    assert d.get_cookie("sluice_console") is None
    shot(d, "01-wrong-key")
    d.get(endpoint + "/console/")
    assert d.current_url.endswith("/console/login"), d.current_url

    # Sign in: the overview, and an HttpOnly SameSite=Strict cookie (plain HTTP: not Secure).
    sign_in(d, endpoint, ACCESS_KEY)
    wait_el(d, "#hub-stats")
    cookie = d.get_cookie("sluice_console")
    assert cookie and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    assert cookie["secure"] is False, cookie
    assert project in [a.text for a in find_all(d, "#projects a")]
    wait_for(lambda: find(d, "#stat-ingest").text.endswith("records/s") or find(d, "#stat-ingest").text,
             "the ingest rate", timeout=WAIT_S)

    # Create a topic with two shards from the project page.
    topic = unique_name("t")
    d.get(endpoint + "/console/projects/" + project)
    fill(d, "#topic-name", topic)
    fill(d, "#topic-shards", "2")
    fill(d, "#topic-schema", json.dumps({"fields": [{"name": "id", "type": "BIGINT"},
                                                    {"name": "name", "type": "STRING"}]}))
    shot(d, "02-create-topic")
    find(d, "#create-topic-button").click()
    wait_el(d, "#shards")
    assert d.current_url.endswith("/topics/" + topic), d.current_url
    states = [td.text for td in find_all(d, "#shards td.state")]
    assert states == ["ACTIVE", "ACTIVE"], states
    assert dh.get_topic(project, topic).shard_count == 2

    # Put with pydatahub, then sample shard 0 from OLDEST.
    put(dh, project, topic, "0", records(0, 20))
    put(dh, project, topic, "1", records(100, 10))
    sub_id = dh.create_subscription(project, topic, "console lag").sub_id
    d.refresh()
    wait_el(d, "#sample-form")
    subs = d.execute_script(
        "return Array.from(document.querySelectorAll('#subscriptions tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent.trim()));")
    assert [row[0] for row in subs] == [sub_id], subs
    assert subs[0][4] == "30" and "0: 20" in subs[0][3] and "1: 10" in subs[0][3], subs
    find(d, "#sample-button").click()
    wait_for(lambda: len(find_all(d, "#records tr.record")) == 20 or len(find_all(d, "#records tr.record")),
             "20 sampled records", timeout=WAIT_S)
    first = [td.text for td in find_all(d, "#records tr.record")[0].find_elements("css selector", "td")]
    assert first[0] == "0" and first[2:] == ["0", "row 0"], first

    # Follow mode: new records appear without reloading.
    find(d, "#follow").click()
    put(dh, project, topic, "0", records(20, 5))
    wait_for(lambda: len(find_all(d, "#records tr.record")) == 25 or len(find_all(d, "#records tr.record")),
             "followed records", timeout=WAIT_S)
    last = [td.text for td in find_all(d, "#records tr.record")[-1].find_elements("css selector", "td")]
    assert last[2:] == ["24", "row 24"], last
    shot(d, "03-sample-follow")
    find(d, "#follow").click()

    # A SINK_MYSQL connector into the MariaDB service, from the form.
    table = unique_name("console")
    mariadb("CREATE TABLE %s (id BIGINT PRIMARY KEY, name VARCHAR(200))" % table)
    password = env("SLUICE_TEST_MYSQL_PASSWORD")
    fill(d, "#mysql-host", env("SLUICE_TEST_MYSQL_HOST"))
    fill(d, "#mysql-port", env("SLUICE_TEST_MYSQL_PORT"))
    fill(d, "#mysql-database", env("SLUICE_TEST_MYSQL_DATABASE"))
    fill(d, "#mysql-table", table)
    fill(d, "#mysql-user", env("SLUICE_TEST_MYSQL_USER"))
    fill(d, "#mysql-password", password)
    find(d, "#create-connector-button").click()
    wait_el(d, "#connector-summary")
    assert "/connectors/" in d.current_url, d.current_url
    assert find(d, "#connector-state").text == "CONNECTOR_RUNNING"
    config = {tr.find_element("css selector", "th").text: tr.find_element("css selector", "td").text
              for tr in find_all(d, "#config tr")}
    assert config["Password"] == "***" and config["Table"] == table, config
    assert config["Host"] == env("SLUICE_TEST_MYSQL_HOST"), config

    # Watch progress: every shard delivered to its end, the rows in MariaDB, a lag line per shard.
    def delivered():
        p = progress(d)
        # position: the last record delivered; end: the next sequence to be written
        return p == {"0": (p.get("0", ("",))[0], "24", "25", "0"),
                     "1": (p.get("1", ("",))[0], "9", "10", "0")} or p
    wait_for(delivered, "the connector to deliver every record", timeout=60)
    wait_for(lambda: mariadb("SELECT COUNT(*) FROM %s" % table) == [["35"]] or mariadb(
        "SELECT COUNT(*) FROM %s" % table), "35 rows in MariaDB", timeout=WAIT_S)
    lines = ("return Array.from(document.querySelectorAll('#lag-chart polyline.lag-line'))"
             ".map(l => [l.dataset.shard, l.getAttribute('points').split(' ').length]);")
    wait_for(lambda: sorted(s for s, n in d.execute_script(lines) if n >= 3) == ["0", "1"] or d.execute_script(lines),
             "a lag line of several polls per shard", timeout=WAIT_S)
    shot(d, "04-connector-progress")

    # Reload (behind a confirmation): the tasks restart and stay delivered.
    find(d, "#reload").click()
    confirm(d, "Reload connector")
    wait_el(d, "#connector-summary")
    wait_for(delivered, "the reloaded connector's progress", timeout=WAIT_S)

    # Stop (behind a confirmation).
    find(d, "#stop").click()
    confirm(d, "Stop")
    wait_el(d, "#start")
    wait_for(lambda: find(d, "#connector-state").text == "CONNECTOR_STOPPED" or find(d, "#connector-state").text,
             "the connector to stop", timeout=WAIT_S)

    # Offset reset to sequence 0 on every shard (behind a confirmation).
    fill(d, "#offset-sequence", "0")
    find(d, "#offset-reset").click()
    confirm(d, "sequence 0")
    wait_el(d, "#progress")
    wait_for(lambda: {s: v[1] for s, v in progress(d).items()} == {"0": "0", "1": "0"} or progress(d),
             "positions back at 0", timeout=WAIT_S)
    shot(d, "05-offset-reset")

    # Start again: it delivers everything after sequence 0 again (REPLACE keeps 35 rows).
    find(d, "#start").click()
    confirm(d, "Start")
    wait_el(d, "#stop")
    wait_for(delivered, "the restarted connector to deliver again", timeout=60)
    assert mariadb("SELECT COUNT(*) FROM %s" % table) == [["35"]]
    shot(d, "06-restarted")

    d.get(endpoint + "/console/")
    wait_el(d, "#hub-stats")
    wait_for(lambda: find(d, "#stat-ingest").text.endswith("records/s") or find(d, "#stat-ingest").text,
             "the ingest rate", timeout=WAIT_S)
    shot(d, "07-overview")

    # Sign out: the session is gone.
    find(d, "#sign-out").click()
    wait_el(d, "#sign-in")
    d.get(endpoint + "/console/")
    assert d.current_url.endswith("/console/login"), d.current_url


def login_with_requests(endpoint, key=ACCESS_KEY, **kw):
    s = requests.Session()
    r = s.post(endpoint + "/console/login", data={"access_id": ACCESS_ID, "access_key": key},
               allow_redirects=False, timeout=10, **kw)
    return s, r


def test_sign_in_cookie_flags_and_refusal(server):
    s, r = login_with_requests(server.endpoint)
    assert r.status_code == 303 and r.headers["Location"] == "/console/"
    cookie = r.headers["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="):
        assert flag in cookie, cookie
    assert "Secure" not in cookie, cookie
    _, bad = login_with_requests(server.endpoint, key=ACCESS_KEY + "x")
    assert bad.status_code == 401 and "Set-Cookie" not in bad.headers
    assert "Sign-in refused" in bad.text and ACCESS_KEY not in bad.text


def test_session_cookie_is_secure_over_https(https_server):
    _, r = login_with_requests(https_server.endpoint, verify=https_server.verify)
    assert r.status_code == 303
    assert "; Secure" in r.headers["Set-Cookie"], r.headers["Set-Cookie"]


def test_api_needs_a_session_and_forms_need_the_csrf_token(server, dh, project):
    anon = requests.get(server.endpoint + "/console/api/overview", timeout=10)
    assert anon.status_code == 401 and "not signed in" in anon.json()["error"]
    page = requests.get(server.endpoint + "/console/", allow_redirects=False, timeout=10)
    assert page.status_code == 303 and page.headers["Location"] == "/console/login"

    s, _ = login_with_requests(server.endpoint)
    totals = s.get(server.endpoint + "/console/api/overview", timeout=10).json()
    assert totals["projects"] >= 1 and "records" in totals and "bytes" in totals

    topic = unique_name("t")
    form = {"name": topic, "shard_count": "1", "lifecycle_days": "1", "record_type": "BLOB", "csrf": "forged"}
    forged = s.post(server.endpoint + "/console/projects/%s/topics" % project, data=form,
                    allow_redirects=False, timeout=10)
    assert forged.status_code == 401 and "CSRF" in forged.text
    assert topic not in dh.list_topic(project).topic_names


def test_connector_json_config_is_checked_by_the_typed_config(server, dh, project):
    topic = unique_name("t")
    dh.create_tuple_topic(project, topic, 1, 1, RecordSchema.from_lists(["id"], [FieldType.BIGINT]),
                          "console json config")
    s, _ = login_with_requests(server.endpoint)
    page = s.get(server.endpoint + "/console/projects/%s/topics/%s" % (project, topic), timeout=10)
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    form = {"csrf": csrf, "kind": "SINK_MYSQL", "columns": "", "start_time": "-1",
            "config_json": json.dumps({"Host": "127.0.0.1", "Port": "3306"})}
    bad = s.post(server.endpoint + "/console/projects/%s/topics/%s/connectors" % (project, topic), data=form,
                 allow_redirects=False, timeout=10)
    assert bad.status_code == 400 and "Database" in bad.text, bad.text
    form["config_json"] = "[1, 2]"
    bad = s.post(server.endpoint + "/console/projects/%s/topics/%s/connectors" % (project, topic), data=form,
                 allow_redirects=False, timeout=10)
    assert bad.status_code == 400 and "JSON object" in bad.text, bad.text
    assert dh.list_connector(project, topic).connector_names == []
