//! qBittorrent's flow (login cookie, form bodies) against the loopback
//! stand-in for its WebUI API v2 ([`crate::wiring::testing::qbit`], where
//! the documented shapes it keeps are listed). The same flow runs against
//! the real `qbittorrent-nox` on the real node in `e2e/tests/realnode.rs`
//! (`qbittorrent_wiring_flow_sets_categories_and_save_path_on_the_real_app`).

use serde_json::json;

use crate::wiring::testing::qbit::{self, QbitState};
use crate::wiring::{ArrClient, LinkState, flow};

#[tokio::test]
async fn qbittorrent_gets_categories_and_save_path_and_a_second_pass_writes_nothing() {
    let q = qbit::start(QbitState::new(
        "admin",
        "qbit-pw",
        json!({"linux-isos": {"name": "linux-isos", "savePath": "/isos"}}),
        json!({"save_path": "/downloads/", "listen_port": 6881}),
    ))
    .await;
    let base = q.base();
    let c = ArrClient::new(&base, None, super::fast()).unwrap();
    let o = flow::qbittorrent(&c, "admin", "qbit-pw").await;
    assert_eq!(o.result.state, LinkState::Connected, "{:?}", o.result);
    assert_eq!(o.writes, 3);
    {
        let s = q.state();
        assert_eq!(s.categories["tv"]["savePath"], "/data/torrents/tv");
        assert_eq!(s.categories["movies"]["savePath"], "/data/torrents/movies");
        assert_eq!(
            s.categories["linux-isos"]["savePath"], "/isos",
            "the user's category is unchanged"
        );
        assert_eq!(
            s.preferences,
            json!({"save_path": "/data/torrents", "listen_port": 6881})
        );
    }
    let o = flow::qbittorrent(&c, "admin", "qbit-pw").await;
    assert_eq!((o.result.state, o.writes), (LinkState::Connected, 0));
    assert_eq!(q.state().writes, 3, "the second pass sent no write");

    let wrong = ArrClient::new(&base, None, super::fast()).unwrap();
    let o = flow::qbittorrent(&wrong, "admin", "guess").await;
    assert_eq!(o.result.state, LinkState::Failed);
    assert!(
        o.result.message.contains("refused the login") && !o.result.message.contains("guess"),
        "{}",
        o.result.message
    );
}
