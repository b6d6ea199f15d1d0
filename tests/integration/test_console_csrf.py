"""Cross-site request forgery (issue 15, point 7): a request that changes
something needs the console's custom header (X-Outpost-Request, which its
page sends) or an Origin equal to the console's address; a form another
site's page makes the browser post is refused 403, whatever credentials
the browser attaches. No WWW-Authenticate challenge is ever sent, so a
browser never holds a Basic password to attach.
"""
from console import Api
from test_api import PASSWORD, start

EVIL = {"Origin": "http://evil.example",
        "Content-Type": "application/x-www-form-urlencoded"}


def paused(local):
    return local.ok("GET", "/api/status")["link"]["paused_by_operator"]


def test_a_cross_site_form_post_is_refused(receivers):
    rx, up, api, local = start(receivers)
    browser = Api(rx, password=PASSWORD)
    assert browser.login().status == 200
    for who in (browser, Api(rx, password=PASSWORD)):  # a session cookie; Basic
        r = who.request("POST", "/api/pause", "x=1", headers=EVIL, csrf=False)
        assert r.status == 403, (r.status, r.body)
        assert "cross-site request refused" in r.json()["error"]
        assert "WWW-Authenticate" not in r.headers
    # No Origin and no header (an old browser, a careless script): refused.
    r = browser.request("POST", "/api/pause", {}, csrf=False)
    assert r.status == 403
    # Not even a login attempt is counted for a forged form.
    r = Api(rx).request("POST", "/api/login", {"password": "x"}, auth=False, csrf=False,
                        headers={"Origin": "http://evil.example"})
    assert r.status == 403
    assert not paused(local)
    assert not [e for e in local.ok("GET", "/api/audit") if e["action"] == "pause"]


def test_the_consoles_own_requests_pass(receivers):
    rx, up, api, local = start(receivers)
    browser = Api(rx, password=PASSWORD)
    assert browser.login().status == 200
    # The page's header.
    r = browser.request("POST", "/api/pause", {}, headers={"X-Outpost-Request": "1"},
                        csrf=False)
    assert r.status == 200 and paused(local)
    # A same-origin Origin, as a browser sends for the page's own fetch.
    r = browser.request("POST", "/api/resume", {}, csrf=False,
                        headers={"Origin": f"http://127.0.0.1:{api.port}"})
    assert r.status == 200 and not paused(local)
    # The Unix socket is no browser's: outpostctl needs neither.
    r = local.request("POST", "/api/pause", {}, csrf=False)
    assert r.status == 200 and paused(local)


def test_no_basic_challenge_but_basic_sent_unasked_works(receivers):
    rx, up, api, local = start(receivers)
    r = Api(rx).get("/api/status")
    assert r.status == 401 and "WWW-Authenticate" not in r.headers
    assert Api(rx, password=PASSWORD).get("/api/status").status == 200
