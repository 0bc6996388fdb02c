//! Interface strings per language. To add a language, add one `Strings` value and list it in `strings`.

pub struct Strings {
    pub viewing_as: &'static str,
    /// Each role's name as the page shows it, in `roles::ALL_ROLES` order.
    pub role_names: [&'static str; 9],
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
    pub fallback_packet_gone: &'static str,
    pub search_all: &'static str,
    /// The form for typing the code printed under a QR code, when the camera cannot read it.
    pub enter_code: &'static str,
    pub open_code: &'static str,
    pub home_intro: &'static str,
    pub nothing_for_role: &'static str,
    pub results_for: &'static str,
    pub no_results: &'static str,
    /// An address that names nothing (a deleted manual's link, a mistyped path).
    pub not_found_title: &'static str,
    pub not_found_text: &'static str,
    /// A search limited to a machine no manual is for yet.
    pub search_no_manuals: &'static str,
    /// Before a machine's name, on the link back to its page.
    pub back_to: &'static str,
    pub you_asked: &'static str,
    pub chat_unsure: &'static str,
    /// The machine has no manual yet: nothing to answer from.
    pub chat_no_manuals: &'static str,
    pub chat_sources: &'static str,
    pub follow_up: &'static str,
    pub talk_to_person: &'static str,
    pub ticket_opened: &'static str,
    pub support_reply: &'static str,
    pub ticket_closed: &'static str,
    /// An agent reopened the person's ticket (their open chat hears it).
    pub ticket_reopened: &'static str,
    pub helpful: &'static str,
    pub not_helpful: &'static str,
    pub chat_failed: &'static str,
    /// Shown in a question's place while its answer is looked up (with JavaScript).
    pub chat_answering: &'static str,
    /// The button that leaves a conversation the chat picked up again after a reload.
    pub new_conversation: &'static str,
    /// Asked before a new conversation leaves an open ticket behind; `{id}` is filled in.
    pub leave_ticket: &'static str,
    /// Without JavaScript, the button that shows support's replies without sending a message.
    pub check_replies: &'static str,
    pub no_replies_yet: &'static str,
    pub leave_contact: &'static str,
    /// The person form while a ticket is open: its button, its field's label, and the message it
    /// sends with the phone or email (a bare request for a person: the assistant does not run).
    pub send_contact: &'static str,
    pub contact_for_call_back: &'static str,
    pub call_back_message: &'static str,
    /// `{queue}` and `{id}` are filled in.
    pub ticket_next: &'static str,
    /// A message on a ticket an agent has taken or answered: it went to them, not the assistant.
    /// `{queue}` and `{id}` are filled in.
    pub ticket_sent: &'static str,
    /// `{hours}`, `{zone}` and `{now}` (the site's weekday and time) are filled in.
    pub ticket_hours_local: &'static str,
    /// Abbreviated weekday names, Monday first (support hours and the site's time are shown in them).
    pub weekdays: [&'static str; 7],
    pub patient_title: &'static str,
    pub patient_intro: &'static str,
    pub dob_label: &'static str,
    pub pin_label: &'static str,
    pub open_button: &'static str,
    pub sign_out: &'static str,
    pub patient_fill_both: &'static str,
    pub form_expired: &'static str,
    /// `{left}` is filled in.
    pub patient_wrong: &'static str,
    /// `{max}` is filled in.
    /// A packet locked for a while: `{max}` tries, `{wait}` like "15 min" or "4 h".
    pub patient_locked: &'static str,
    /// A packet locked before locks ended by themselves: a clinician lifts it.
    pub patient_locked_until_unlocked: &'static str,
    pub patient_dob_ambiguous: &'static str,
    pub patient_client_limit: &'static str,
    pub patient_private: &'static str,
    pub patient_ask: &'static str,
    /// A patient's question refused: empty or too long ({max} is the limit).
    pub patient_question_length: &'static str,
    /// A patient's questions over their limit.
    pub patient_too_many: &'static str,
    /// Every inference slot busy.
    pub patient_busy: &'static str,
    /// A message refused for its length ({max} is the limit).
    pub chat_length: &'static str,
    /// A contact refused ({max} is the limit).
    pub chat_contact: &'static str,
    /// Too many messages ({minutes} is the wait).
    pub chat_too_many: &'static str,
    /// Every inference slot busy.
    pub chat_busy: &'static str,
    /// A conversation id nobody has.
    pub chat_unknown_conversation: &'static str,
    /// A code or asset nobody has.
    pub chat_unknown_asset: &'static str,
    /// A conversation whose machine left the registry.
    pub chat_asset_gone: &'static str,
    /// Heading of a refusal for a limit.
    pub heading_wait: &'static str,
    /// Heading of a refusal when busy.
    pub heading_busy: &'static str,
    /// Heading of a refusal for the question itself.
    pub heading_check: &'static str,
    /// Heading of the search's limit page.
    pub heading_too_many: &'static str,
    /// A search refused for its length ({max} is the limit).
    pub search_length: &'static str,
    /// The search's limit.
    pub search_too_many: &'static str,
    /// The page after a patient signs out, or finds their session ended.
    pub patient_signed_out_title: &'static str,
    pub patient_signed_out: &'static str,
    pub patient_session_ended: &'static str,
    /// The PIN slip handed to the patient with their papers.
    pub pin_slip_heading: &'static str,
    pub pin_slip_text: &'static str,
    /// The last day the packet can be opened; `{date}` is `YYYY-MM-DD`.
    pub pin_slip_until: &'static str,
    pub patient_unsure: &'static str,
    /// Whom to call, when the packet names its ward (`{contact}`): on the patient's page, on the
    /// sign-in page and the PIN slip, and (short) on the label.
    pub patient_call: &'static str,
    pub pin_help: &'static str,
    pub label_call: &'static str,
}

pub const EN: Strings = Strings {
    viewing_as: "Viewing as",
    role_names: [
        "anonymous",
        "operator",
        "technician",
        "biomedical engineer",
        "clinician",
        "patient",
        "support agent",
        "editor",
        "administrator",
    ],
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
    fallback_packet_gone: "These discharge instructions are no longer available here. If you still need them, call the phone number on your discharge papers.",
    search_all: "Search all manuals",
    enter_code: "Or type the code printed under the QR code",
    open_code: "Open",
    home_intro: "Scan the code on a machine or a leaflet to open its page, or search every manual here.",
    nothing_for_role: "There is nothing in this manual for your role.",
    results_for: "Results for",
    no_results: "Nothing in the manuals matched. Try other words, or contact the site.",
    not_found_title: "Page not found",
    not_found_text: "There is no page at this address. Scan the code again, or start from the home page.",
    search_no_manuals: "There is no manual for this machine here yet, so there is nothing to search. Contact the site for help.",
    back_to: "Back to",
    you_asked: "You asked",
    chat_unsure: "I am not sure the manuals answer this. These are the closest parts; a person can help.",
    chat_no_manuals: "There is no manual for this machine here yet, so I cannot answer from one. A person can help.",
    chat_sources: "Sources",
    follow_up: "Ask a follow-up",
    talk_to_person: "Talk to a person",
    ticket_opened: "Ticket",
    support_reply: "Support",
    ticket_closed: "Support closed this ticket. Ask again or scan the label any time.",
    ticket_reopened: "Support reopened this ticket; their replies will appear here.",
    helpful: "Helpful",
    not_helpful: "Not helpful",
    chat_failed: "That did not go through. Check the connection and try again, or call the number below.",
    chat_answering: "Looking it up in the manuals…",
    new_conversation: "Start a new conversation",
    leave_ticket: "Support is still answering ticket {id} here. In a new conversation you will not see their reply. Start a new one anyway?",
    check_replies: "Check for replies",
    no_replies_yet: "No reply from support yet. They answer here; check again in a while.",
    leave_contact: "Phone or email, if you want a call back (optional)",
    send_contact: "Send for a call back",
    contact_for_call_back: "Phone or email for a call back",
    call_back_message: "Please call me.",
    ticket_next: "{queue} will see ticket {id} with this conversation and answer here",
    ticket_sent: "Sent to {queue} on ticket {id}: the answer comes here.",
    ticket_hours_local: "{hours}, {zone} time; it is {now} there now",
    weekdays: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    patient_title: "Your discharge instructions",
    patient_intro: "These instructions are private. To open them, enter your date of birth and the PIN on the slip you were given when you left hospital.",
    dob_label: "Date of birth",
    pin_label: "PIN (6 digits)",
    open_button: "Open my instructions",
    sign_out: "Sign out",
    patient_fill_both: "Enter your date of birth (for example 1958-03-14) and the 6-digit PIN from your slip.",
    form_expired: "This form expired. Please try again.",
    patient_wrong: "That date of birth and PIN do not match. {left} attempt(s) left before these instructions are locked.",
    patient_dob_ambiguous: "That date could be read two ways. Please write it as year-month-day, for example 1949-11-02 for 2 November 1949, or pick it in the calendar. This did not count as an attempt.",
    patient_locked: "These instructions are locked after {max} wrong attempts. Try again in {wait}, or call the phone number on your discharge papers: the ward can unlock them now.",
    patient_locked_until_unlocked: "These instructions are locked after {max} wrong attempts. Call the phone number on your discharge papers: the ward can unlock them.",
    patient_client_limit: "Too many attempts from this connection. Wait 15 minutes, or call the phone number on your discharge papers.",
    patient_private: "Only you can see this page. Sign out when you are done, especially on a shared phone.",
    patient_ask: "Ask about your instructions",
    patient_question_length: "A question is 1 to {max} characters.",
    patient_too_many: "Too many questions in a few minutes. Please wait a little, or call the number on your papers.",
    patient_busy: "The assistant is busy. Please try again in a moment, or call the number on your papers.",
    chat_length: "a message is 1 to {max} characters",
    chat_contact: "a contact is one line of up to {max} characters",
    chat_too_many: "too many messages; try again in {minutes} min, or call the number on the label",
    chat_busy: "the assistant is busy; try again in a moment, or call the number on the label",
    chat_unknown_conversation: "unknown conversation: start a new one without it",
    chat_unknown_asset: "unknown code or asset: scan the label again",
    chat_asset_gone: "this conversation's machine is no longer listed here: scan the label again to start a new one",
    heading_wait: "Please wait a little",
    heading_busy: "The assistant is busy",
    heading_check: "Please check your question",
    heading_too_many: "Too many questions",
    search_length: "Type a question of 1 to {max} characters.",
    search_too_many: "Too many questions from this network in the last few minutes. Try again shortly.",
    patient_signed_out_title: "You are signed out",
    patient_signed_out: "Your instructions are closed on this phone. To open them again, scan the code on your papers.",
    patient_session_ended: "Your session ended after a while without use, so your question was not sent. Scan the code on your papers to open your instructions again.",
    pin_slip_heading: "Your PIN",
    pin_slip_text: "With your date of birth, this PIN opens your instructions at the address on your papers. Keep it apart from them.",
    pin_slip_until: "Your instructions can be opened until {date}. After that they are deleted.",
    patient_unsure: "I am not sure your instructions answer this. For anything urgent, call the number on your papers.",
    patient_call: "Questions about your care? Call {contact}.",
    pin_help: "Lost your PIN, or are your instructions locked? Call {contact}.",
    label_call: "Questions? Call {contact}",
};

pub const ES: Strings = Strings {
    viewing_as: "Viendo como",
    role_names: [
        "visitante",
        "operador",
        "técnico",
        "ingeniero biomédico",
        "clínico",
        "paciente",
        "agente de soporte",
        "editor",
        "administrador",
    ],
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
    fallback_packet_gone: "Estas instrucciones de alta ya no están disponibles aquí. Si todavía las necesita, llame al teléfono de sus papeles de alta.",
    search_all: "Buscar en todos los manuales",
    enter_code: "O escriba el código impreso bajo el código QR",
    open_code: "Abrir",
    home_intro: "Escanee el código de un equipo o de un folleto para abrir su página, o busque aquí en todos los manuales.",
    nothing_for_role: "No hay nada en este manual para su función.",
    results_for: "Resultados para",
    no_results: "No hubo coincidencias en los manuales. Pruebe con otras palabras o contacte con el centro.",
    not_found_title: "Página no encontrada",
    not_found_text: "No hay ninguna página en esta dirección. Escanee el código de nuevo o empiece por la página de inicio.",
    search_no_manuals: "Todavía no hay ningún manual de esta máquina, así que no hay nada que buscar. Contacte con el centro para recibir ayuda.",
    back_to: "Volver a",
    you_asked: "Su pregunta",
    chat_unsure: "No estoy seguro de que los manuales respondan a esto. Estas son las partes más cercanas; una persona puede ayudarle.",
    chat_no_manuals: "Todavía no hay ningún manual de esta máquina, así que no puedo responder con uno. Una persona puede ayudarle.",
    chat_sources: "Fuentes",
    follow_up: "Hacer otra pregunta",
    talk_to_person: "Hablar con una persona",
    ticket_opened: "Incidencia",
    support_reply: "Soporte",
    ticket_closed: "Soporte cerró esta incidencia. Puede preguntar de nuevo o escanear la etiqueta cuando quiera.",
    ticket_reopened: "Soporte reabrió esta incidencia; sus respuestas aparecerán aquí.",
    helpful: "Útil",
    not_helpful: "No útil",
    chat_failed: "No se pudo enviar. Compruebe la conexión e inténtelo de nuevo, o llame al número de abajo.",
    chat_answering: "Buscando en los manuales…",
    new_conversation: "Empezar una conversación nueva",
    leave_ticket: "Soporte aún está respondiendo a la incidencia {id} aquí. En una conversación nueva no verá su respuesta. ¿Empezar una nueva de todos modos?",
    check_replies: "Ver respuestas",
    no_replies_yet: "Soporte aún no ha respondido. Responderá aquí; vuelva a mirar dentro de un rato.",
    leave_contact: "Teléfono o correo, si quiere que le llamen (opcional)",
    send_contact: "Enviar para que me llamen",
    contact_for_call_back: "Teléfono o correo para que le llamen",
    call_back_message: "Por favor, llámenme.",
    ticket_next: "{queue} verá la incidencia {id} con esta conversación y responderá aquí",
    ticket_sent: "Enviado a {queue} en la incidencia {id}: la respuesta llegará aquí.",
    ticket_hours_local: "{hours}, hora de {zone}; allí es ahora {now}",
    weekdays: ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
    patient_title: "Sus instrucciones al alta",
    patient_intro: "Estas instrucciones son privadas. Para abrirlas, escriba su fecha de nacimiento y el PIN de la hoja que le dieron al salir del hospital.",
    dob_label: "Fecha de nacimiento",
    pin_label: "PIN (6 cifras)",
    open_button: "Abrir mis instrucciones",
    sign_out: "Cerrar sesión",
    patient_fill_both: "Escriba su fecha de nacimiento como año-mes-día (por ejemplo 1958-03-14) y el PIN de 6 cifras de su hoja.",
    form_expired: "Este formulario ha caducado. Inténtelo de nuevo.",
    patient_wrong: "La fecha de nacimiento y el PIN no coinciden. Le quedan {left} intento(s) antes de que se bloqueen estas instrucciones.",
    patient_dob_ambiguous: "Esa fecha puede leerse de dos maneras. Escríbala como año-mes-día, por ejemplo 1949-11-02 para el 2 de noviembre de 1949, o elíjala en el calendario. Este intento no cuenta.",
    patient_locked: "Estas instrucciones están bloqueadas tras {max} intentos fallidos. Vuelva a intentarlo dentro de {wait}, o llame al teléfono de sus papeles de alta: en la planta pueden desbloquearlas ahora.",
    patient_locked_until_unlocked: "Estas instrucciones están bloqueadas tras {max} intentos fallidos. Llame al teléfono de sus papeles de alta: en la planta pueden desbloquearlas.",
    patient_client_limit: "Demasiados intentos desde esta conexión. Espere 15 minutos o llame al teléfono de sus papeles de alta.",
    patient_private: "Solo usted puede ver esta página. Cierre la sesión al terminar, sobre todo en un teléfono compartido.",
    patient_ask: "Pregunte sobre sus instrucciones",
    patient_question_length: "Una pregunta tiene de 1 a {max} caracteres.",
    patient_too_many: "Demasiadas preguntas en pocos minutos. Espere un poco o llame al teléfono de sus papeles.",
    patient_busy: "El asistente está ocupado. Inténtelo de nuevo en un momento o llame al teléfono de sus papeles.",
    chat_length: "un mensaje tiene de 1 a {max} caracteres",
    chat_contact: "un contacto es una línea de hasta {max} caracteres",
    chat_too_many: "demasiados mensajes; inténtelo de nuevo en {minutes} min o llame al número de la etiqueta",
    chat_busy: "el asistente está ocupado; inténtelo de nuevo en un momento o llame al número de la etiqueta",
    chat_unknown_conversation: "conversación desconocida: empiece una nueva",
    chat_unknown_asset: "código o equipo desconocido: escanee la etiqueta de nuevo",
    chat_asset_gone: "el equipo de esta conversación ya no figura aquí: escanee la etiqueta de nuevo para empezar otra",
    heading_wait: "Espere un poco",
    heading_busy: "El asistente está ocupado",
    heading_check: "Revise su pregunta",
    heading_too_many: "Demasiadas preguntas",
    search_length: "Escriba una pregunta de 1 a {max} caracteres.",
    search_too_many: "Demasiadas preguntas desde esta red en los últimos minutos. Inténtelo de nuevo en breve.",
    patient_signed_out_title: "Ha cerrado la sesión",
    patient_signed_out: "Sus instrucciones quedan cerradas en este teléfono. Para abrirlas de nuevo, escanee el código de sus papeles.",
    patient_session_ended: "Su sesión terminó tras un tiempo sin uso, así que su pregunta no se envió. Escanee el código de sus papeles para abrir sus instrucciones de nuevo.",
    pin_slip_heading: "Su PIN",
    pin_slip_text: "Con su fecha de nacimiento, este PIN abre sus instrucciones en la dirección de sus papeles. Guárdelo aparte de ellos.",
    pin_slip_until: "Podrá abrir sus instrucciones hasta el {date}. Después se borrarán.",
    patient_unsure: "No estoy seguro de que sus instrucciones respondan a esto. Si es urgente, llame al teléfono de sus papeles.",
    patient_call: "¿Tiene dudas sobre sus cuidados? Llame a: {contact}.",
    pin_help: "¿Ha perdido su PIN o se han bloqueado sus instrucciones? Llame a: {contact}.",
    label_call: "¿Dudas? Llame a: {contact}",
};

impl Strings {
    /// `template` with the packet's contact in it, or nothing when the packet names none (made
    /// before contacts were asked for): then the older wording, "the number on your papers", stands.
    pub fn with_contact(&self, template: &str, contact: &str) -> String {
        let contact = contact.trim();
        if contact.is_empty() {
            String::new()
        } else {
            template.replace("{contact}", contact)
        }
    }
}

/// Languages with interface strings.
impl Strings {
    /// `role`'s name in this language.
    pub fn role_name(&self, role: crate::roles::Role) -> &'static str {
        let at = crate::roles::ALL_ROLES
            .iter()
            .position(|r| *r == role)
            .expect("every role is in ALL_ROLES");
        self.role_names[at]
    }
}

pub const UI_LANGUAGES: &[&str] = &["en", "es"];

/// `language` when the interface has strings for it, else the default language.
pub fn interface_language(language: &str) -> String {
    if UI_LANGUAGES.contains(&language) {
        language.to_string()
    } else {
        crate::language::DEFAULT_LANGUAGE.to_string()
    }
}

pub fn strings(language: &str) -> &'static Strings {
    match language {
        "es" => &ES,
        _ => &EN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_each_language_shows_as_an_example_is_one_the_form_accepts() {
        for language in UI_LANGUAGES {
            let text = strings(language).patient_fill_both;
            let example = text
                .split(|c: char| c.is_whitespace() || c == ')' || c == '(')
                .find(|w| w.chars().filter(|c| c.is_ascii_digit()).count() == 8)
                .unwrap_or_else(|| panic!("{language}: no example date in {text:?}"));
            // Year first: a day-first example (14/03/1958) teaches a form that is refused as
            // ambiguous for every day up to the 12th.
            assert!(
                example.len() == 10 && example.as_bytes()[4] == b'-',
                "{language}: {example} is not year-month-day"
            );
            assert!(
                !crate::patients::dob_is_ambiguous(example),
                "{language}: {example} reads two ways"
            );
            assert!(
                crate::patients::normalise_dob(example).is_some(),
                "{language}: {example} is refused"
            );
        }
    }
}
