// One validation for `server add`, `app add` and the API.
#include "healer/service/inventory.hpp"

#include <gtest/gtest.h>

#include "healer/service/errors.hpp"

namespace healer::service {
namespace {

ServerSpec spec(std::string name) {
  ServerSpec s;
  s.name = std::move(name);
  s.host = "10.0.0.5";
  s.user = "deploy";
  s.identity = "/k";
  return s;
}

TEST(Inventory, NamesMayHoldAnyPrintableTextButNoControls) {
  EXPECT_TRUE(validate_server(spec("web1")));
  EXPECT_TRUE(validate_server(spec("<script>alert(1)</script>")));  // shown as text everywhere
  EXPECT_TRUE(validate_server(spec("caf\xc3\xa9")));
  for (const char* bad : {"", "-rf", "a\033[2Jb", "tab\there", "\xff"}) {
    auto record = validate_server(spec(bad));
    ASSERT_FALSE(record) << bad;
    EXPECT_EQ(record.error().code, Errc::invalid_input);
  }
  EXPECT_FALSE(validate_server(spec(std::string(129, 'a'))));
}

TEST(Inventory, HostUserTagsLabelsAndSecrets) {
  auto s = spec("web1");
  s.host = "-oProxyCommand=x";
  EXPECT_FALSE(validate_server(s));
  s = spec("web1");
  s.user = "a b";
  EXPECT_FALSE(validate_server(s));
  s = spec("web1");
  s.tags = {"prod", "a,b"};
  EXPECT_FALSE(validate_server(s));
  s = spec("web1");
  s.labels = {{"k=v", "x"}};
  EXPECT_FALSE(validate_server(s));
  s = spec("web1");
  s.auth = store::AuthMethod::password;
  EXPECT_FALSE(validate_server(s));
  s.secret = "pw";
  auto record = validate_server(s);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->secret, "pw");
}

TEST(Inventory, Applications) {
  store::ApplicationRecord app;
  app.name = "shop";
  app.systemd_units = {"nginx.service"};
  app.ports = {443};
  app.health_url = "http://127.0.0.1/health";
  app.log_paths = {"/var/log/nginx/error.log"};
  EXPECT_TRUE(validate_application(app));
  for (const char* url :
       {"-o/tmp/x", "file:///etc/passwd", "ftp://x", "http://a b", "http://x\r\nHost: y"}) {
    auto bad = app;
    bad.health_url = url;
    EXPECT_FALSE(validate_application(bad)) << url;
  }
  auto bad = app;
  bad.systemd_units = {"nginx\n.service"};
  EXPECT_FALSE(validate_application(bad));
  bad = app;
  bad.log_paths = {"relative.log"};
  EXPECT_FALSE(validate_application(bad));
  bad = app;
  bad.log_paths = {"/var/log/x\x1b.log"};
  EXPECT_FALSE(validate_application(bad));
}

TEST(Inventory, AuthNames) {
  for (const auto method : {store::AuthMethod::key_file, store::AuthMethod::agent,
                            store::AuthMethod::password, store::AuthMethod::stored_key}) {
    EXPECT_EQ(parse_auth(auth_name(method)), method);
  }
  EXPECT_FALSE(parse_auth("keys").has_value());
}

}  // namespace
}  // namespace healer::service
