package keys

import (
	"errors"
	"strings"
	"testing"
)

// slotTag returns the part of key that Redis Cluster hashes.
func slotTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

func TestKeysAreDistinct(t *testing.T) {
	b := New("shop", "product", 64)
	long := strings.Repeat("x", 65)
	inputs := []string{"", "a", "a:b", "a}b", "}", "{", "{}", "a}:i", "x}:l", "*?[]\\", " ", "\r\n\x00", "%7D", "%", "%25", long, long + "y"}
	seen := map[string]string{}
	for _, k := range inputs {
		for kind, key := range map[string]string{"data": b.Key(k), "marker": Marker(b.Key(k)), "lease": Lease(b.Key(k))} {
			if prev, ok := seen[key]; ok {
				t.Errorf("%s key for %q = %q, same as for %s", kind, k, key, prev)
			}
			seen[key] = kind + " " + k
		}
	}
	if New("a:b", "c", 64).Key("k") == New("a", "b", 64).Key("c:k") {
		t.Errorf("prefix/name split collides")
	}
}

func TestCompanionsShareSlot(t *testing.T) {
	b := New("p", "n", 16)
	for _, k := range []string{"", "42", "a}b", "{x}", "}{", strings.Repeat("z", 100)} {
		key := b.Key(k)
		tag := slotTag(key)
		if tag == "" || tag == key {
			t.Errorf("Key(%q) = %q has no hash tag", k, key)
		}
		for _, c := range []string{Marker(key), Lease(key)} {
			if got := slotTag(c); got != tag {
				t.Errorf("slotTag(%q) = %q, want %q", c, got, tag)
			}
		}
	}
	if slotTag(b.Key("a")) == slotTag(b.Key("b")) {
		t.Errorf("two keys of one cache share a slot tag")
	}
	if slotTag(b.Key("}1")) == slotTag(b.Key("}2")) || slotTag(b.Key("{t}1")) == slotTag(b.Key("{t}2")) {
		t.Errorf("user keys with a brace pick a shared slot tag")
	}
}

func TestLongKeysAreHashed(t *testing.T) {
	b := New("p", "n", 200)
	k := strings.Repeat("k", 10<<10)
	got := b.Key(k)
	if len(got) > 100 {
		t.Errorf("len(Key(10 KiB)) = %d, want a short hashed key", len(got))
	}
	if got != b.Key(k) {
		t.Errorf("Key is not deterministic")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr bool
	}{
		{"prefix ok", ValidatePrefix("shop:eu"), false},
		{"prefix empty", ValidatePrefix(""), false},
		{"prefix brace", ValidatePrefix("a{b"), true},
		{"name ok", ValidateName("product"), false},
		{"name empty", ValidateName(""), true},
		{"name colon", ValidateName("a:b"), true},
		{"name brace", ValidateName("a}"), true},
		{"name long", ValidateName(strings.Repeat("n", 129)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, ErrInvalid); got != tt.wantErr {
				t.Errorf("error = %v, want invalid %v", tt.err, tt.wantErr)
			}
		})
	}
}

func TestEscapeGlob(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a*b", `a\*b`},
		{`?[x]\`, `\?\[x\]\\`},
		{"", ""},
	}
	for _, tt := range tests {
		if got := EscapeGlob(tt.in); got != tt.want {
			t.Errorf("EscapeGlob(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestVersionAndTagKeysNeverCollideWithData(t *testing.T) {
	b := New("p", "n", 16)
	data := map[string]bool{}
	for _, k := range []string{"~v", "v1:x", "", "x"} {
		data[b.Key(k)] = true
		data[b.KeyAt("1", k)] = true
	}
	for _, k := range []string{b.Version(), Tag("p", "n", 16), Tag("p", strings.Repeat("t", 40), 16), Tag("p", "x", 16)} {
		if data[k] || strings.Contains(k, "{=") || strings.Contains(k, "{#=") {
			t.Errorf("%q collides with a data key or looks like one", k)
		}
	}
	if b.KeyAt("1", "k") == b.KeyAt("2", "k") || b.KeyAt("1", "k") == b.Key("k") {
		t.Errorf("versions share keys")
	}
}

// TestEncodings pins keys to their exact bytes: stored data is found by
// these strings, so a change here strands every value already in Redis.
func TestEncodings(t *testing.T) {
	b := New("shop", "product", 16)
	long := strings.Repeat("k", 20)
	const hashed = "{#=_lUu36W8e6UAdXzEn9PhNpxbTKmMNWr6eBUFi_l2cSA:kkkkkkkkkkkkkkkk}"
	tests := []struct {
		call, got, want string
	}{
		{`Key("42")`, b.Key("42"), "shop:product:{=42}"},
		{`Key("")`, b.Key(""), "shop:product:{=}"},
		{`Key("a}b%c")`, b.Key("a}b%c"), "shop:product:{=a%7Db%25c}"},
		{`Key("*?[x]")`, b.Key("*?[x]"), "shop:product:{=*?[x]}"},
		{`Key(long)`, b.Key(long), "shop:product:" + hashed},
		{`KeyAt("3", "42")`, b.KeyAt("3", "42"), "shop:product:v3:{=42}"},
		{`KeyAt("3", long)`, b.KeyAt("3", long), "shop:product:v3:" + hashed},
		{`New("", "n").Key("x")`, New("", "n", 16).Key("x"), "n:{=x}"},
		{`Version()`, b.Version(), "shop:product:~v"},
		{`VersionedBase("3")`, b.VersionedBase("3"), "shop:product:v3:"},
		{`Base()`, b.Base(), "shop:product:"},
		{`Tag("shop", "org:7")`, Tag("shop", "org:7", 16), "shop:~tag:{torg:7}"},
		{`Tag("", "t}")`, Tag("", "t}", 16), "~tag:{tt%7D}"},
		{`Tag("shop", long)`, Tag("shop", long, 16), "shop:~tag:{#t_lUu36W8e6UAdXzEn9PhNpxbTKmMNWr6eBUFi_l2cSA:kkkkkkkkkkkkkkkk}"},
		{`Marker(Key("42"))`, Marker(b.Key("42")), "shop:product:{=42}:i"},
		{`Lease(Key("42"))`, Lease(b.Key("42")), "shop:product:{=42}:l"},
		{`Patterns(Base(), "ab*")`, strings.Join(Patterns(b.Base(), "ab*", 16), " "),
			`shop:product:{=ab\**` + " " + `shop:product:{#=???????????????????????????????????????????:ab\**`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.call, tt.got, tt.want)
		}
	}
}
