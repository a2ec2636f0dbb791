"""The console in a real browser (headless Chromium from Debian, driven by Selenium), against a
real `wharf serve` started by gateway/tests/console.rs, which passes addresses and keys in the
environment. Exits non-zero (with the failing step) on any failure; saves a screenshot of each
page into SCREENSHOTS."""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ADMIN = os.environ["WHARF_ADMIN"]
PROXY = os.environ["WHARF_PROXY"]
OP = os.environ["WHARF_OP"]
KEY_A = os.environ["WHARF_KEY_A"]
KEY_B = os.environ["WHARF_KEY_B"]
PLUGIN = os.environ["WHARF_PLUGIN"]
SHOTS = os.environ["SCREENSHOTS"]
NOT_WASM = os.environ["WHARF_NOT_WASM"]
PEMS = os.environ["WHARF_PEMS"]
NAMED = os.environ["WHARF_NAMED"]  # http://up.a.test:<port>, which dnsmasq resolves

opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
          "--window-size=1280,800"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=opts)
# The usage panel re-renders every few seconds: an element read just as it is replaced is
# stale, and the wait looks again.
wait = WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,))


def step(name):
    print(f"step: {name}", flush=True)


def shot(name, at=None):
    """Saves a screenshot, scrolled to the element with id `at` (default: the top)."""
    if at:
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", at)
    else:
        driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.2)
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def message():
    return driver.find_element(By.ID, "message").text


def wait_message(text):
    wait.until(lambda d: text in d.find_element(By.ID, "message").text,
               f"message containing {text!r}")
    return message()


def sign_in(token):
    driver.get(f"http://{ADMIN}/console/")
    wait.until(EC.presence_of_element_located((By.ID, "token")))
    box = driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token, Keys.ENTER)  # keyboard only


def sign_out():
    driver.find_element(By.ID, "signout").click()
    wait.until(EC.presence_of_element_located((By.ID, "token")))


def fill(id_, value):
    for _ in range(5):  # the usage panel re-renders every few seconds
        try:
            el = driver.find_element(By.ID, id_)
            el.clear()
            el.send_keys(value)
            return
        except StaleElementReferenceException:
            time.sleep(0.2)
    raise AssertionError(f"{id_} kept being re-rendered")


def api(method, path, token, body=None):
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(f"http://{ADMIN}{path}", method=method, headers=headers, data=data)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def live_target(text):
    """Waits until the route view's live targets show `text`; their table's text."""
    def seen(d):
        rows = d.find_elements(By.CSS_SELECTOR, "#route-targets tr[data-target]")
        try:
            return any(text in r.text for r in rows) and d.find_element(By.ID, "route-targets").text
        except StaleElementReferenceException:  # refreshed every 2 s
            return False
    return wait.until(seen, f"a live target showing {text!r}")


try:
    step("sign-in page, a refused token")
    driver.get(f"http://{ADMIN}/console/")
    wait.until(EC.presence_of_element_located((By.ID, "token")))
    shot("signin")
    sign_in("not-a-key")
    assert "not accepted" in wait_message("not accepted")
    assert "not-a-key" not in driver.current_url, "the token never goes in a URL"

    step("tenant a signs in")
    sign_in(KEY_A)
    wait.until(EC.presence_of_element_located((By.ID, "routes")))
    assert "a.test" in driver.find_element(By.ID, "hostnames").text
    assert KEY_A not in driver.current_url
    stored = driver.execute_script("return sessionStorage.getItem('wharf.token')")
    assert stored == KEY_A, "kept in session storage"
    assert driver.execute_script("return localStorage.length") == 0

    step("ACME for a hostname: turned on, its failure shown in words, turned off")
    def acme_row():
        return driver.find_element(By.CSS_SELECTOR, "tr[data-hostname='a.test']")
    assert "off" in acme_row().find_element(By.CLASS_NAME, "acme-state").text
    acme_row().find_element(By.TAG_NAME, "button").click()
    wait_message("ACME on for a.test")
    assert api("GET", "/v1/tenants/a/acme", KEY_A)["hostnames"][0]["hostname"] == "a.test"
    def failed(d):  # the section refreshes every 3 s
        try:
            row = acme_row()
            return (row.find_element(By.CLASS_NAME, "acme-state").text == "failed"
                    and row.find_element(By.CLASS_NAME, "acme-error").text != "—" and row.text)
        except Exception:
            return False
    shown = wait.until(failed, "the failed order and its error in the hostname's row")
    print("ACME row:", shown)
    # The fleet's side of the failure is the operator's (logged): not the CA's address.
    assert "cannot reach its ACME CA" in shown and "https://" not in shown, shown
    shot("tenant-acme", at="hostnames")
    acme_row().find_element(By.TAG_NAME, "button").click()
    wait_message("ACME off for a.test")
    wait.until(lambda d: "off" in acme_row().find_element(By.CLASS_NAME, "acme-state").text)
    assert api("GET", "/v1/tenants/a/acme", KEY_A)["hostnames"] == []
    # Tenant b's hostname is not a's to turn on, even by a crafted call.
    try:
        api("PUT", "/v1/tenants/a/acme/b.test", KEY_A)
        raise AssertionError("a turned ACME on for b.test")
    except urllib.error.HTTPError as e:
        assert e.code == 400, e.code

    step("create a route")
    fill("route-id", "web")
    fill("route-prefix", "/web")
    fill("route-upstreams", os.environ["WHARF_UPSTREAM"])
    driver.find_element(By.CSS_SELECTOR, "#route-form button[type=submit]").click()
    wait_message("Route web saved")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-route=web]")))

    step("a route to a named target with a weight, retries and the target's Host")
    fill("route-id", "named")
    fill("route-prefix", "/named")
    fill("route-upstreams", f"{NAMED} 3")
    fill("route-retries", "4")
    Select(driver.find_element(By.ID, "route-host-header")).select_by_value("upstream")
    driver.find_element(By.CSS_SELECTOR, "#route-form button[type=submit]").click()
    wait_message("Route named saved")
    row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-route=named]")))
    assert "up.a.test" in row.text and "weight 3" in row.text and "4 retries" in row.text, row.text
    stored = api("GET", "/v1/tenants/a/routes/named", KEY_A)
    assert stored["upstreams"] == [{"addr": NAMED, "weight": 3}], stored
    assert (stored["retries"], stored["host_header"]) == (4, "upstream"), stored

    step("the route view shows each target's live state")
    # An active health check, set through the API: the view shows probes' verdict beside ejection.
    body = {k: stored[k] for k in ["path_prefix", "methods", "upstreams", "timeouts", "retries",
                                   "upstream_protocol", "upstream_tls", "host_header"]}
    body["health_check"] = {"kind": "tcp", "interval_ms": 1000}
    api("PUT", "/v1/tenants/a/routes/named", KEY_A, body)
    driver.find_element(By.CSS_SELECTOR, "tr[data-route=named] a").click()
    wait.until(EC.presence_of_element_located((By.ID, "route-settings")))
    settings = driver.find_element(By.ID, "route-settings").text
    for seen in ["Retries 4", "the target's name", "tcp every 1000 ms", f"{NAMED} (weight 3)"]:
        assert seen in settings, (seen, settings)
    port = NAMED.rsplit(":", 1)[1]
    targets = live_target(f"127.0.0.1:{port}")
    for seen in ["up.a.test", "healthy", "in rotation"]:
        assert seen in targets, (seen, targets)
    assert "unhealthy" not in targets and "ejected" not in targets, targets
    live = api("GET", "/v1/tenants/a/routes/named", KEY_A)["targets"]
    assert live == [{"addr": f"127.0.0.1:{port}", "name": "up.a.test", "healthy": True,
                     "ejected": False}], live
    shot("route")
    # Through the proxy, the upstream gets the target's name as Host.
    req = urllib.request.Request(f"http://{PROXY}/named", headers={"Host": "a.test"})
    with urllib.request.urlopen(req) as r:
        assert json.loads(r.read())["headers"]["host"] == f"up.a.test:{port}"

    step("edited in the route view: the health check the form does not show is kept")
    fill("route-retries", "1")
    driver.find_element(By.CSS_SELECTOR, "#edit-named button[type=submit]").click()
    wait_message("Route named saved")
    stored = api("GET", "/v1/tenants/a/routes/named", KEY_A)
    assert stored["retries"] == 1 and stored["health_check"]["kind"] == "tcp", stored
    assert "Retries 1" in driver.find_element(By.ID, "route-settings").text
    fill("route-upstreams", "up.a.test:80 heavy")
    driver.find_element(By.CSS_SELECTOR, "#edit-named button[type=submit]").click()
    assert "whole-number weight" in wait_message("whole-number weight")
    driver.find_element(By.LINK_TEXT, "All routes of this tenant").click()
    wait.until(EC.presence_of_element_located((By.ID, "route-form")))

    step("a refused upload says why")
    fill("plugin-name", "junk")
    driver.find_element(By.ID, "plugin-file").send_keys(NOT_WASM)
    driver.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    refused = wait_message("not a WebAssembly component")
    shot("upload-refused", at="plugins")
    print("refused upload:", refused)

    step("upload a plugin (twice: two versions) and attach it")
    for _ in range(2):
        fill("plugin-name", "tag")
        driver.find_element(By.ID, "plugin-file").send_keys(PLUGIN)
        driver.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
        wait_message("uploaded as a new version")
        time.sleep(0.3)
    wait.until(EC.presence_of_element_located((By.ID, "attach-form")))
    driver.find_element(By.CSS_SELECTOR, "#attach-route option[value=api]").click()
    fill("attach-config", "request-value=console")
    fill("attach-outbound", "https://auth.example.com")
    driver.find_element(By.CSS_SELECTOR, "#attach-form button[type=submit]").click()
    wait_message("attached to api")
    assert "tag v2" in driver.find_element(By.CSS_SELECTOR, "tr[data-route=api]").text
    assert "may call https://auth.example.com:443" in driver.find_element(By.CSS_SELECTOR, "tr[data-route=api]").text

    step("traffic through the proxy moves the usage graph")
    time.sleep(1.0)  # the node applies the change (50 ms polls)
    for _ in range(25):
        req = urllib.request.Request(f"http://{PROXY}/", headers={"Host": "a.test"})
        with urllib.request.urlopen(req) as r:
            body = json.loads(r.read())
    assert body["headers"].get("x-wharf-plugin") == "console", body
    wait.until(lambda d: int(d.find_element(By.ID, "usage-total").text.split()[0]) >= 25,
               "usage total counts the requests")
    wait.until(lambda d: "req/s" in d.find_element(By.ID, "usage").text, "usage shows req/s")
    shot("tenant")
    shot("tenant-usage", at="usage")

    step("one-click rollback")
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-plugin=tag]")
    row.find_element(By.CSS_SELECTOR, "option[value='1']").click()
    row.find_element(By.TAG_NAME, "button").click()
    wait_message("now runs v1")
    wait.until(lambda d: "tag v1" in d.find_element(By.CSS_SELECTOR, "tr[data-route=api]").text)
    audit = driver.find_element(By.ID, "audit").text
    assert "rollback" in audit, audit
    shot("tenant-audit", at="audit")

    step("a certificate for another tenant's hostname is refused, in words")
    def upload_cert(name, stem):
        fill("cert-name", name)
        driver.find_element(By.ID, "cert-chain").send_keys(os.path.join(PEMS, f"{stem}-chain.pem"))
        driver.find_element(By.ID, "cert-key").send_keys(os.path.join(PEMS, f"{stem}-key.pem"))
        driver.find_element(By.CSS_SELECTOR, "#cert-form button[type=submit]").click()
    upload_cert("stolen", "b")
    refused = wait_message("none of which is a hostname of this tenant")
    print("refused certificate:", refused)

    step("upload a certificate, then remove one")
    upload_cert("main", "a")
    wait_message("Certificate main stored")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "li[data-certificate=main]")))
    assert "a.test" in driver.find_element(By.CSS_SELECTOR, "li[data-certificate=main]").text
    certs = api("GET", "/v1/tenants/a/certificates", KEY_A)["certificates"]
    assert [c["name"] for c in certs] == ["main"], certs
    assert all("key_pem" not in c and "key_sealed" not in c for c in certs), "no key comes back"
    upload_cert("spare", "a")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "li[data-certificate=spare]")))
    shot("tenant-certificates", at="certificates")
    driver.find_element(By.CSS_SELECTOR, "li[data-certificate=spare] button").click()
    wait.until(EC.alert_is_present())
    driver.switch_to.alert.accept()
    wait_message("Certificate spare removed")
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "li[data-certificate=spare]"))
    assert [c["name"] for c in api("GET", "/v1/tenants/a/certificates", KEY_A)["certificates"]] == ["main"]

    step("a route to an https:// target with the upstream TLS settings")
    fill("route-id", "secure")
    fill("route-prefix", "/secure")
    fill("route-upstreams", "https://127.0.0.1:1")
    fill("route-tls-server-name", "tls.a.test")
    with open(os.path.join(PEMS, "ca.pem")) as f:
        ca_pem = f.read()
    fill("route-tls-ca", ca_pem)
    Select(driver.find_element(By.ID, "route-tls-client-certificate")).select_by_value("main")
    driver.find_element(By.CSS_SELECTOR, "#route-form button[type=submit]").click()
    wait_message("Route secure saved")
    tls = api("GET", "/v1/tenants/a/routes/secure", KEY_A)["upstream_tls"]
    assert tls["server_name"] == "tls.a.test" and tls["client_certificate"] == "main", tls
    assert tls["ca_pem"].split() == ca_pem.split(), tls
    driver.find_element(By.CSS_SELECTOR, "tr[data-route=secure] a").click()
    wait.until(EC.presence_of_element_located((By.ID, "route-settings")))
    settings = driver.find_element(By.ID, "route-settings").text
    for seen in ["tls.a.test", "1 certificate of the route", "Client certificate main"]:
        assert seen in settings, (seen, settings)
    shot("route-tls", at="route-settings")
    driver.find_element(By.LINK_TEXT, "All routes of this tenant").click()
    wait.until(EC.presence_of_element_located((By.ID, "route-form")))

    step("narrow window")
    driver.set_window_size(480, 900)
    time.sleep(0.3)
    shot("tenant-narrow")
    driver.set_window_size(1280, 800)

    step("tenant b sees none of it")
    sign_out()
    sign_in(KEY_B)
    wait.until(EC.presence_of_element_located((By.ID, "routes")))
    page = driver.find_element(By.ID, "main").text
    assert "b.test" in page and "a.test" not in page and "tag" not in page, page
    driver.get(f"http://{ADMIN}/console/#/tenant/a")
    wait.until(EC.text_to_be_present_in_element((By.ID, "main"), "does not exist"))
    shot("other-tenant-refused")

    step("the operator issues a key")
    sign_out()
    sign_in(OP)
    wait.until(EC.presence_of_element_located((By.ID, "tenants")))
    text = driver.find_element(By.ID, "tenants").text
    assert "a.test" in text and "b.test" in text
    nodes = driver.find_element(By.ID, "nodes").text
    assert ADMIN in nodes, nodes  # this node, by its admin address
    shot("operator")
    driver.find_element(By.CSS_SELECTOR, "tr[data-tenant=b] a[href*=operator]").click()
    wait.until(EC.presence_of_element_located((By.ID, "issue-key")))
    driver.find_element(By.ID, "issue-key").click()
    wait.until(EC.presence_of_element_located((By.ID, "new-key")))
    new_key = driver.find_element(By.ID, "new-key").text
    assert api("GET", "/v1/whoami", new_key) == {"operator": False, "tenant": "b"}
    shot("operator-keys")

    step("quotas edited")
    box = driver.find_element(By.CSS_SELECTOR, "[data-quota=plugin_fuel]")
    box.clear()
    box.send_keys("2000000")
    driver.find_element(By.CSS_SELECTOR, "#quota-form button[type=submit]").click()
    wait_message("Quotas saved")
    assert api("GET", "/v1/tenants/b", OP)["quotas"]["plugin_fuel"] == 2000000
    print("console: all steps passed")
except Exception as e:  # the failing step is printed above
    shot("failure")
    print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    if isinstance(e, urllib.error.HTTPError):
        # The gateway's JSON names what failed (e.g. plugin_timeout or upstream_timeout).
        print(f"response: {e.read()[:2000]!r}", file=sys.stderr)
    print(driver.find_element(By.TAG_NAME, "body").text[:3000], file=sys.stderr)
    sys.exit(1)
finally:
    driver.quit()
