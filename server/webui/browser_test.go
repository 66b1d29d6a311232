package webui_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealcache/sealcache/internal/testproc"
	"github.com/sealcache/sealcache/orgs"
	"github.com/sealcache/sealcache/server/adminapi"
	"github.com/sealcache/sealcache/server/adminapi/adminapitest"
	"github.com/sealcache/sealcache/server/webui"
)

// withPage serves the settings page next to the admin API, as the server does.
func withPage(mux *http.ServeMux, _ *adminapi.Deps) {
	h := webui.Handler()
	mux.Handle("GET /{$}", h)
	mux.Handle("GET /ui/", h)
}

// chromium returns the browser to drive. Without one the test is skipped
// on a workstation and fails in CI, where `make test` installs it.
func chromium(t *testing.T) string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testproc.OnCI() {
		t.Fatal("chromium is not installed: `make test` installs it with apt-get install chromium")
	}
	t.Skip("chromium is not installed (apt-get install chromium); skipping the browser test")
	return ""
}

// browser starts a headless chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// A bound for a hung browser, not a speed expectation: every step
	// waits on a DOM condition.
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx
}

func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("reading %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// cellWithText waits for a table cell of the table with id holding exactly s.
func cellWithText(table, s string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.Search(`//table[@id="` + table + `"]//td[normalize-space(text())="` + s + `"]`))
}

// clearInput empties a text field, as selecting all and deleting would.
func clearInput(css string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`((e) => { e.value = ""; return true })(document.querySelector(`+strconv.Quote(css)+`))`)(ctx, t)
		return err
	})
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SEALCACHE_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func TestSettingsPageEnablesAndDisablesCMEK(t *testing.T) {
	ctx := browser(t)
	env := adminapitest.Start(t, withPage)
	keyURI := env.CreateLocalKey(t, "customer")
	_, writer := env.NewKey(t, orgs.RoleWriter)

	do(t, ctx, "open the page", chromedp.Navigate(env.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#signin-form")))

	// A writer key is refused at sign-in, with the reason by the key field.
	do(t, ctx, "sign in with a writer key",
		chromedp.SendKeys(chromedp.CSS("#api-key"), writer),
		chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#api-key-error")),
	)
	if msg := text(t, ctx, "#api-key-error"); !strings.Contains(msg, "role writer") || !strings.Contains(msg, "admin") {
		t.Errorf("writer sign-in message %q does not say an admin key is needed", msg)
	}

	do(t, ctx, "sign in with the admin key",
		clearInput("#api-key"),
		chromedp.SendKeys(chromedp.CSS("#api-key"), env.AdminSecret),
		chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
		chromedp.WaitVisible(chromedp.Search(`//*[@id="ov-name"][text()="default"]`)),
	)
	if stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("sealcache.apiKey")`)); err != nil || stored != env.AdminSecret {
		t.Errorf("the key is not kept in sessionStorage: %q %v", stored, err)
	}

	// The Encryption keys tab starts Disabled with the enable form.
	do(t, ctx, "open the Encryption keys tab",
		chromedp.Click(chromedp.CSS("#tab-encryption")),
		chromedp.WaitVisible(chromedp.CSS("#enc-enable-card")),
		chromedp.WaitVisible(chromedp.Search(`//*[@id="enc-state"][text()="Disabled"]`)),
	)
	if got, _ := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#grant-command"))); !strings.Contains(got, "--member=serviceAccount:sealcache@operator-project.iam.gserviceaccount.com") ||
		!strings.Contains(got, "roles/cloudkms.cryptoKeyEncrypterDecrypter") {
		t.Errorf("gcloud grant command: %q", got)
	}

	// A malformed key URI: the server's message appears by the URI field.
	do(t, ctx, "enable with a bad key URI",
		chromedp.Click(chromedp.CSS(`#enc-providers input[value="local-kms"]`)),
		chromedp.SendKeys(chromedp.CSS("#key-uri"), "local-kms://no such key!"),
		chromedp.Click(chromedp.CSS("#enable-submit")),
		chromedp.WaitVisible(chromedp.CSS(`[data-field="customer_key_uri"].invalid #key-uri-error`)),
	)
	if msg := text(t, ctx, "#key-uri-error"); !strings.Contains(msg, "invalid key URI") {
		t.Errorf("bad URI message %q", msg)
	}
	screenshot(t, ctx, "encryption-keys-tab-bad-uri.png")

	do(t, ctx, "enable with a local-kms key",
		clearInput("#key-uri"),
		chromedp.SendKeys(chromedp.CSS("#key-uri"), keyURI),
		chromedp.Click(chromedp.CSS("#enable-submit")),
		chromedp.WaitVisible(chromedp.Search(`//*[@id="enc-state"][text()="Enabled"]`)),
		chromedp.WaitVisible(chromedp.CSS("#enc-disable-card")),
	)
	rec, err := env.Store.CurrentKey(t.Context(), env.DefaultOrg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#enc-key-id"); got != rec.KeyID {
		t.Errorf("page shows key id %q, store has %q", got, rec.KeyID)
	}
	if got := text(t, ctx, "#enc-key-uri"); got != keyURI {
		t.Errorf("page shows key URI %q", got)
	}
	do(t, ctx, "see the change in the audit log", cellWithText("audit-table", "cmek_enabled"))
	screenshot(t, ctx, "encryption-keys-tab.png")

	// Disabling needs the org's name typed again.
	if enabled, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.querySelector("#disable-submit").disabled`)); enabled {
		t.Error("Disable is enabled before the org name is typed")
	}
	do(t, ctx, "disable with the typed confirmation",
		chromedp.SendKeys(chromedp.CSS("#confirm-name"), "default"),
		chromedp.WaitEnabled(chromedp.CSS("#disable-submit")),
		chromedp.Click(chromedp.CSS("#disable-submit")),
		chromedp.WaitVisible(chromedp.Search(`//*[@id="enc-state"][text()="Disabled"]`)),
		chromedp.WaitVisible(chromedp.CSS("#enc-enable-card")),
		cellWithText("audit-table", "cmek_disabled"),
	)
	if _, err := env.Store.CurrentKey(t.Context(), env.DefaultOrg.ID); err == nil {
		t.Error("the store still has a key record after disabling in the page")
	}

	// Sign-out forgets the key.
	do(t, ctx, "sign out",
		chromedp.Click(chromedp.CSS("#sign-out")),
		chromedp.WaitVisible(chromedp.CSS("#signin-form")),
	)
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`sessionStorage.length`)); err != nil || n != 0 {
		t.Errorf("sessionStorage after sign-out holds %d items (%v)", n, err)
	}
}

func TestSettingsPageCreatesAPIKey(t *testing.T) {
	ctx := browser(t)
	env := adminapitest.Start(t, withPage)
	do(t, ctx, "sign in and open API keys",
		chromedp.Navigate(env.URL+"/"),
		chromedp.SendKeys(chromedp.CSS("#api-key"), env.AdminSecret),
		chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
		chromedp.Click(chromedp.CSS("#tab-keys")),
		cellWithText("keys-table", "initial admin"),
		chromedp.SendKeys(chromedp.CSS("#key-label"), "ci"),
		chromedp.Click(chromedp.CSS(`#key-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("#new-key")),
		cellWithText("keys-table", "ci"),
	)
	secret, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#new-key-secret")))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := env.Auth.Authenticate(t.Context(), secret); err != nil || k.Role != orgs.RoleWriter {
		t.Errorf("secret shown once authenticates as %v, %v", k, err)
	}
	screenshot(t, ctx, "api-keys-tab.png")
	flags, _ := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#new-key-flags")))
	if !strings.Contains(flags, "--remote_header=x-api-key="+secret) {
		t.Errorf("Bazel flags %q", flags)
	}
}

func TestHandlerServesOnlyThePageAndAssets(t *testing.T) {
	env := adminapitest.Start(t, withPage)
	for path, want := range map[string]int{"/": 200, "/ui/app.js": 200, "/ui/style.css": 200, "/ui/nope.js": 404} {
		resp, err := http.Get(env.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); want == 200 && !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
}
