//! Interface strings per language. To add a language, add one `Strings` value and list it in `strings`.

pub struct Strings {
    pub viewing_as: &'static str,
    pub ask_label: &'static str,
    pub ask_placeholder: &'static str,
    pub ask_button: &'static str,
    pub read_more: &'static str,
    pub in_the_manual: &'static str,
    pub more_sections: &'static str,
    pub help: &'static str,
    pub hours: &'static str,
    pub after_hours: &'static str,
    pub on_call_now: &'static str,
    pub staff_sign_in: &'static str,
    pub fallback_title: &'static str,
    pub fallback_unknown: &'static str,
    pub fallback_retired: &'static str,
    pub search_all: &'static str,
    pub home_intro: &'static str,
    pub nothing_for_role: &'static str,
    pub results_for: &'static str,
    pub no_results: &'static str,
}

pub const EN: Strings = Strings {
    viewing_as: "Viewing as",
    ask_label: "Ask the manual",
    ask_placeholder: "e.g. what does E-204 mean?",
    ask_button: "Ask",
    read_more: "Read the whole section",
    in_the_manual: "In the manual",
    more_sections: "More in the manual",
    help: "Need help?",
    hours: "Hours",
    after_hours: "After hours",
    on_call_now: "Outside opening hours: who to call now",
    staff_sign_in: "Staff sign-in",
    fallback_title: "This code is not in use",
    fallback_unknown: "We could not find this code. It may be mistyped or from another site. You can still search the manuals or call the site below.",
    fallback_retired: "This label has been retired. The equipment may have moved or been replaced. Search the manuals or call the site below.",
    search_all: "Search all manuals",
    home_intro: "Scan the code on a machine or a leaflet to open its page, or search every manual here.",
    nothing_for_role: "There is nothing in this manual for your role.",
    results_for: "Results for",
    no_results: "Nothing in the manuals matched. Try other words, or contact the site.",
};

pub const ES: Strings = Strings {
    viewing_as: "Viendo como",
    ask_label: "Pregunte al manual",
    ask_placeholder: "p. ej., ¿qué significa E-204?",
    ask_button: "Preguntar",
    read_more: "Leer toda la sección",
    in_the_manual: "En el manual",
    more_sections: "Más en el manual",
    help: "¿Necesita ayuda?",
    hours: "Horario",
    after_hours: "Fuera de horario",
    on_call_now: "Fuera de horario: a quién llamar ahora",
    staff_sign_in: "Acceso del personal",
    fallback_title: "Este código no está en uso",
    fallback_unknown: "No encontramos este código. Puede estar mal escrito o ser de otro centro. Puede buscar en los manuales o llamar al centro.",
    fallback_retired: "Esta etiqueta fue retirada. El equipo puede haberse trasladado o sustituido. Busque en los manuales o llame al centro.",
    search_all: "Buscar en todos los manuales",
    home_intro: "Escanee el código de un equipo o de un folleto para abrir su página, o busque aquí en todos los manuales.",
    nothing_for_role: "No hay nada en este manual para su función.",
    results_for: "Resultados para",
    no_results: "No hubo coincidencias en los manuales. Pruebe con otras palabras o contacte con el centro.",
};

/// Languages with interface strings.
pub const UI_LANGUAGES: &[&str] = &["en", "es"];

pub fn strings(language: &str) -> &'static Strings {
    match language {
        "es" => &ES,
        _ => &EN,
    }
}
