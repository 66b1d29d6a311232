package webui_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sealcache/sealcache/server/adminapi"
	"github.com/sealcache/sealcache/server/adminapi/adminapitest"
)

// On a server whose operator configured no KMS identities, the enable form
// says so and whom to ask, instead of an empty grant box; the local key
// choice says where local keys come from; and the form says what enabling
// does to the data stored before (it is deleted).
func TestSettingsPageExplainsGrantsAndWhatEnablingDeletes(t *testing.T) {
	ctx := browser(t)
	env := adminapitest.Start(t, withPage, func(_ *http.ServeMux, deps *adminapi.Deps) { deps.OperatorPrincipals = nil })
	do(t, ctx, "sign in and open the Encryption keys tab",
		chromedp.Navigate(env.URL+"/"),
		chromedp.SendKeys(chromedp.CSS("#api-key"), env.AdminSecret),
		chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
		chromedp.Click(chromedp.CSS("#tab-encryption")),
		chromedp.WaitVisible(chromedp.CSS("#enc-enable-card")),
	)
	if got := strings.Join(strings.Fields(text(t, ctx, "#enable-text")), " "); !strings.Contains(got, "Enabling deletes the objects stored for this organization before") {
		t.Errorf("the enable form says %q; want it to say the data stored before is deleted", got)
	}

	for _, c := range []struct {
		provider string
		want     []string
	}{
		{"gcp-kms", []string{"no operator identity configured for Google Cloud KMS", "--gcp_kms_principal", "Ask the operator which service account"}},
		{"aws-kms", []string{"no operator identity configured for AWS KMS", "--aws_kms_principal", "kms:Encrypt"}},
		{"local-kms", []string{"Local keys are for trying CMEK", `sealcache kms create-local-key NAME`, "local-kms://NAME"}},
	} {
		do(t, ctx, "choose "+c.provider,
			chromedp.Click(chromedp.CSS(`#enc-providers input[value="`+c.provider+`"]`)),
			chromedp.WaitVisible(chromedp.CSS("#grant-text")),
		)
		got := text(t, ctx, "#grant-text")
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: the grant text %q does not say %q", c.provider, got, w)
			}
		}
		hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#grant-principal-row").hidden && document.querySelector("#grant-command-row").hidden`))
		if err != nil || !hidden {
			t.Errorf("%s: an empty principal or command box is shown (%v)", c.provider, err)
		}
		if c.provider == "gcp-kms" {
			screenshot(t, ctx, "encryption-keys-no-operator-principal.png")
		}
	}
}
