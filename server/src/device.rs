//! What the client is, from its User-Agent: a device class for routing, and whether it is a link-preview
//! bot or crawler (those are answered but not counted as scans).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceClass {
    Ios,
    Android,
    Desktop,
}

impl DeviceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Ios => "ios",
            DeviceClass::Android => "android",
            DeviceClass::Desktop => "desktop",
        }
    }

    pub fn from_user_agent(user_agent: &str) -> Self {
        let ua = user_agent.to_ascii_lowercase();
        if ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod") {
            DeviceClass::Ios
        } else if ua.contains("android") {
            DeviceClass::Android
        } else {
            DeviceClass::Desktop
        }
    }
}

impl std::str::FromStr for DeviceClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ios" => Ok(DeviceClass::Ios),
            "android" => Ok(DeviceClass::Android),
            "desktop" => Ok(DeviceClass::Desktop),
            other => Err(format!(
                "unknown device {other:?}: use ios, android or desktop"
            )),
        }
    }
}

/// Link unfurlers and crawlers fetch a URL when it is pasted or indexed; none of that is a person scanning.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "facebookcatalog",
    "whatsapp",
    "skypeuripreview",
    "preview",
    "embedly",
    "quora link",
    "outbrain",
    "pinterest",
    "vkshare",
    "w3c_validator",
    "headlesschrome-prefetch",
];

pub fn is_bot(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|m| ua.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_classes_from_real_user_agents() {
        let cases = [
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", DeviceClass::Ios),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36", DeviceClass::Android),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36", DeviceClass::Desktop),
            ("", DeviceClass::Desktop),
        ];
        for (ua, want) in cases {
            assert_eq!(DeviceClass::from_user_agent(ua), want, "{ua}");
        }
    }

    #[test]
    fn preview_bots_are_recognised_and_browsers_are_not() {
        for ua in [
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "facebookexternalhit/1.1",
            "WhatsApp/2.23.20.0",
            "Mozilla/5.0 (compatible; Discordbot/2.0)",
            "TelegramBot (like TwitterBot)",
            "LinkedInBot/1.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1)",
        ] {
            assert!(is_bot(ua), "{ua}");
        }
        assert!(!is_bot(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148 Safari/604.1"
        ));
    }
}
